"""Jobs: `evalkit run | train | nightly` commands queued in the results store and run one at a time.

What LLaMA Board's users lost and this keeps: a job is the CLI command itself, started in its own process
group (its own session) with its output in a log file, never tied to a browser connection or the server's
process. A board that restarts reconciles: a job marked running whose process is gone is marked failed.
Cancel kills the whole process group; a cancelled evaluation rerun resumes from the request cache.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import platformdirs
from sqlalchemy import select, update

from evalkit.errors import EvalkitError
from evalkit.store.engine import normalise_url, open_store
from evalkit.store.schema import Job

COMMANDS = ("run", "train", "nightly")  # what a job may be: the commands that produce results
FINISHED = ("done", "failed", "cancelled")


def default_log_dir() -> Path:
    return Path(os.environ.get("EVALKIT_JOBS_DIR") or Path(platformdirs.user_data_dir("evalkit")) / "jobs")


def check_command(argv: list[str]) -> None:
    """Refuse, before queueing, what `evalkit` itself would refuse to parse (one line, the parser's own)."""
    from evalkit.cli import build_parser

    if not argv or argv[0] not in COMMANDS:
        raise EvalkitError(f"a job is one of: evalkit {' | '.join(COMMANDS)} ...; got {' '.join(argv[:1]) or 'nothing'}")
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit:
        lines = stderr.getvalue().strip().splitlines() or ["the command does not parse"]
        raise EvalkitError(f"job `evalkit {' '.join(argv)}`: {lines[-1]}") from None
    # what each command reads first is read now too: a typo should not wait in the queue to fail
    if argv[0] == "run":
        from evalkit.tasks.registry import resolve_tasks, set_include_paths

        set_include_paths(args.include_path)
        resolve_tasks(args.tasks)
    elif argv[0] == "train":
        from evalkit.train.recipe import load_recipe

        load_recipe(args.recipe, args.overrides)
    elif argv[0] == "nightly":
        from evalkit.nightly.suite import load_suite

        load_suite(args.suite)


def submit(argv: list[str], store: str | None = None, user: str = "") -> int:
    check_command(argv)
    factory, _ = open_store(store)
    with factory.begin() as session:
        job = Job(argv=list(argv), user=user)
        session.add(job)
        session.flush()
        return job.id


def list_jobs(store: str | None = None, state: str | None = None) -> list[Job]:
    factory, _ = open_store(store)
    query = select(Job).order_by(Job.id.desc())
    if state:
        query = query.where(Job.state == state)
    with factory() as session:
        return list(session.scalars(query))


def get_job(job_id: int, store: str | None = None) -> Job:
    factory, _ = open_store(store)
    with factory() as session:
        job = session.get(Job, job_id)
    if job is None:
        raise EvalkitError(f"no job {job_id} in the store; `evalkit jobs list` shows them")
    return job


def _alive(pid: int | None) -> bool:
    """Our job's process (an evalkit process by its command line), not a reused pid."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return b"evalkit" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (ProcessLookupError, PermissionError, FileNotFoundError):
        return False


def reconcile(store: str | None = None) -> list[int]:
    """Mark failed the jobs recorded as running whose process is gone (a board or worker that died)."""
    factory, _ = open_store(store)
    gone = []
    with factory.begin() as session:
        for job in session.scalars(select(Job).where(Job.state == "running")):
            if not _alive(job.pid):
                job.state, job.finished_at = "failed", datetime.now(timezone.utc)
                job.note = f"its process {job.pid} is gone (the worker or board stopped while it ran)"
                gone.append(job.id)
    return gone


def cancel(job_id: int, store: str | None = None, grace: float = 5.0) -> Job:
    """A queued job never starts; a running one's process group gets SIGTERM, then SIGKILL after ``grace``."""
    factory, _ = open_store(store)
    with factory.begin() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise EvalkitError(f"no job {job_id} in the store; `evalkit jobs list` shows them")
        if job.state in FINISHED:
            raise EvalkitError(f"job {job_id} has already finished ({job.state})")
        pid, job.state = job.pid, "cancelled"
        job.finished_at = datetime.now(timezone.utc)
    if pid and _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return get_job(job_id, store)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _claim_next(store: str) -> Job | None:
    """The oldest queued job, marked running by this worker (an UPDATE that only one worker can win)."""
    factory, _ = open_store(store)
    with factory.begin() as session:
        for job_id in session.scalars(select(Job.id).where(Job.state == "queued").order_by(Job.id)):
            won = session.execute(update(Job).where(Job.id == job_id, Job.state == "queued")
                                  .values(state="running", started_at=datetime.now(timezone.utc))).rowcount
            if won:
                return session.get(Job, job_id)
    return None


def run_job(job: Job, store: str, log_dir: Path, device: str | None = None) -> int:
    """Start the job's command in its own session, wait for it, record how it ended. Returns its exit code.
    ``device``: the one CUDA device the job sees (a worker per GPU)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"job-{job.id}.log"
    env = {**os.environ, "EVALKIT_STORE": store}  # its runs land in the store the job came from
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "evalkit", *job.argv], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    factory, _ = open_store(store)
    with factory.begin() as session:
        session.execute(update(Job).where(Job.id == job.id).values(pid=process.pid, log_path=str(log_path)))
    code = process.wait()
    with factory.begin() as session:
        row = session.get(Job, job.id)
        row.exit_code, row.finished_at = code, row.finished_at or datetime.now(timezone.utc)
        if row.state != "cancelled":
            row.state = "done" if code == 0 else "failed"
    return code


def work(store: str | None = None, log_dir: Path | None = None, once: bool = False, poll: float = 1.0,
         stop: threading.Event | None = None, device: str | None = None, reconciled: bool = False) -> int:
    """Run queued jobs one after another (``once``: until the queue is empty). Returns how many ran. Several
    workers may share a store: each claims a job with an UPDATE only one of them wins."""
    url, log_dir = normalise_url(store), log_dir or default_log_dir()
    if not reconciled:
        reconcile(url)
    ran = 0
    while not (stop and stop.is_set()):
        job = _claim_next(url)
        if job is None:
            if once:
                break
            time.sleep(poll)
            continue
        run_job(job, url, log_dir, device)
        ran += 1
    return ran
