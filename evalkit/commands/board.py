"""``evalkit board``: the results store and its jobs in a browser (runs, jobs launched from a form, their
live logs, the leaderboard). Binds 127.0.0.1; from another machine, tunnel to it:
``ssh -L 7860:127.0.0.1:7860 HOST`` then open http://127.0.0.1:7860.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from evalkit.commands.run import positive_int
from evalkit.commands.store import STORE_HELP
from evalkit.errors import EvalkitError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("board", help="the web board: runs, jobs, leaderboard", description=__doc__)
    p.add_argument("--store", default=None, metavar="URL", help=STORE_HELP)
    p.add_argument("--host", default="127.0.0.1", help="loopback only until the board has authentication")
    p.add_argument("--port", type=positive_int, default=7860)
    p.add_argument("--root-path", default="", help="the path prefix a reverse proxy serves the board under")
    p.add_argument("--log-dir", type=Path, default=None, help="job logs (default $EVALKIT_JOBS_DIR or the user data dir)")
    p.add_argument("--no-worker", action="store_true", help="serve pages only; run jobs with `evalkit jobs work`")
    p.set_defaults(func=board)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def board(args) -> int:
    import uvicorn

    from evalkit.board import jobs
    from evalkit.board.app import create_app
    from evalkit.store import open_store

    if not loopback(args.host):
        raise EvalkitError(f"--host {args.host}: the board has no authentication yet, so it binds loopback only; "
                           "reach it through an SSH tunnel (ssh -L 7860:127.0.0.1:7860 HOST)")
    if args.port > 65535:
        raise EvalkitError(f"--port {args.port}: use 1..65535")
    url = open_store(args.store)[1]  # a bad store fails now, before the server starts
    log_dir = args.log_dir or jobs.default_log_dir()
    app = create_app(url, log_dir, log_dir.parent / "board-site", workers=not args.no_worker, root_path=args.root_path)
    print(f"evalkit board: http://{args.host}:{args.port}{args.root_path}/ (store {url})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
