"""``evalkit board``: the results store and its jobs in a browser (runs, jobs launched from a form, their
live logs, the leaderboard). Binds 127.0.0.1; from another machine, tunnel to it
(``ssh -L 7860:127.0.0.1:7860 HOST``, then open http://127.0.0.1:7860), or bind another address, which
requires a token on every request (``evalkit board-users add NAME --role viewer|voter|operator``).
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
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1); any other needs board users, see evalkit board-users")
    p.add_argument("--port", type=positive_int, default=7860)
    p.add_argument("--root-path", default="", help="the path prefix a reverse proxy serves the board under")
    p.add_argument("--log-dir", type=Path, default=None, help="job logs (default $EVALKIT_JOBS_DIR or the user data dir)")
    p.add_argument("--no-worker", action="store_true", help="serve pages only; run jobs with `evalkit jobs work`")
    p.add_argument("--workers", type=positive_int, default=1, help="jobs run at once (default 1)")
    p.add_argument("--devices", default=None, metavar="0,1,...",
                   help="one worker per CUDA device, each job seeing only its worker's (CUDA_VISIBLE_DEVICES)")
    p.set_defaults(func=board)
    u = subparsers.add_parser("board-users", help="tokens for the board: add, list, revoke")
    actions = u.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create (or replace) a user's token; it is printed once")
    add.add_argument("user")
    add.add_argument("--role", choices=["viewer", "voter", "operator"], required=True)
    actions.add_parser("list", help="users and roles")
    revoke = actions.add_parser("revoke", help="delete a user's token")
    revoke.add_argument("user")
    for action in actions.choices.values():
        action.add_argument("--store", default=None, metavar="URL", help=STORE_HELP)
    u.set_defaults(func=board_users)


def board_users(args) -> int:
    from evalkit.board import auth

    if args.action == "add":
        print(f"token for {args.user} ({args.role}), shown once: {auth.add_user(args.user, args.role, args.store)}")
    elif args.action == "list":
        for user in auth.users(args.store):
            print(f"{user.user}\t{user.role}")
    else:
        auth.revoke(args.user, args.store)
        print(f"revoked {args.user}")
    return 0


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

    from evalkit.board import auth

    if args.port > 65535:
        raise EvalkitError(f"--port {args.port}: use 1..65535")
    url = open_store(args.store)[1]  # a bad store fails now, before the server starts
    require_auth = not loopback(args.host)
    if require_auth and not auth.users(url):
        raise EvalkitError(f"--host {args.host}: a board reachable from other machines needs users; create one with "
                           "`evalkit board-users add NAME --role operator`, or keep 127.0.0.1 and tunnel "
                           "(ssh -L 7860:127.0.0.1:7860 HOST)")
    log_dir = args.log_dir or jobs.default_log_dir()
    devices = [d.strip() for d in args.devices.split(",")] if args.devices else None
    if devices and not all(d.isdigit() for d in devices):
        raise EvalkitError(f"--devices {args.devices}: CUDA device numbers, e.g. --devices 0,1")
    app = create_app(url, log_dir, log_dir.parent / "board-site", workers=0 if args.no_worker else args.workers,
                     devices=None if args.no_worker else devices, root_path=args.root_path, require_auth=require_auth)
    print(f"evalkit board: http://{args.host}:{args.port}{args.root_path}/ (store {url}; "
          f"{'tokens required' if require_auth else 'loopback, no login'})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
