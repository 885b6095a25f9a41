"""``evalkit jobs``: queue `evalkit run | train | nightly` commands in the results store and run them.

    evalkit jobs submit -- run --model smollm2-135m-instruct --tasks cmmlu --limit 5
    evalkit jobs work [--once]        # run queued jobs one at a time, each in its own process group
    evalkit jobs list | show ID | cancel ID

A job is exactly its CLI command (same results files), with its output in a log file; ``evalkit board``
launches the same jobs from a browser.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from evalkit.commands.store import STORE_HELP


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("jobs", help="queue evalkit commands and run them one at a time", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", required=True)
    submit = actions.add_parser("submit", help="queue a command: evalkit jobs submit -- run --model ... --tasks ...")
    submit.add_argument("argv", nargs=argparse.REMAINDER, help="the evalkit command after `--`")
    submit.add_argument("--user", default="", help="who asked for it (recorded)")
    actions.add_parser("list", help="jobs, newest first")
    show = actions.add_parser("show", help="one job and the end of its log")
    show.add_argument("id", type=int)
    cancel = actions.add_parser("cancel", help="cancel a queued job, or kill a running one's process group")
    cancel.add_argument("id", type=int)
    worker = actions.add_parser("work", help="run queued jobs one after another")
    worker.add_argument("--once", action="store_true", help="stop when the queue is empty")
    worker.add_argument("--log-dir", type=Path, default=None, help="job logs (default $EVALKIT_JOBS_DIR or the user data dir)")
    for action in actions.choices.values():
        action.add_argument("--store", default=None, metavar="URL", help=STORE_HELP)
    p.set_defaults(func=jobs)


def jobs(args) -> int:
    from evalkit.board import jobs as queue

    if args.action == "submit":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        print(f"job {queue.submit(argv, args.store, args.user)} queued: evalkit {' '.join(argv)}")
    elif args.action == "list":
        for job in queue.list_jobs(args.store):
            print(f"{job.id}\t{job.state}\t{job.exit_code if job.exit_code is not None else '-'}\tevalkit {' '.join(job.argv)}")
    elif args.action == "show":
        job = queue.get_job(args.id, args.store)
        print(f"job {job.id}: {job.state} (exit {job.exit_code}) evalkit {' '.join(job.argv)}")
        if job.note:
            print(job.note)
        if job.log_path and Path(job.log_path).is_file():
            print("".join(Path(job.log_path).read_text(encoding="utf-8", errors="replace").splitlines(True)[-20:]), end="")
    elif args.action == "cancel":
        job = queue.cancel(args.id, args.store)
        print(f"job {job.id}: {job.state}")
    else:
        print(f"ran {queue.work(args.store, args.log_dir, once=args.once)} job(s)")
    return 0
