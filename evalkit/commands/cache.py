"""evalkit cache info | clear: the request cache that lets a killed run resume (see docs/reliability.md)."""

from __future__ import annotations

from datetime import datetime, timezone


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("cache", help="show or clear the request cache", description=__doc__)
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("info", help="where the cache is, how many answers it holds, its size").set_defaults(func=show)
    actions.add_parser("clear", help="delete every cached answer").set_defaults(func=clear)


def show(args) -> int:
    from evalkit.backends import request_cache

    found = request_cache.info()
    print(f"request cache: {found['path']}")
    if not found["exists"]:
        print("empty (no run has been cached yet)")
        return 0
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(found["by_kind"].items())) or "nothing"
    print(f"{found['entries']} answers ({kinds}) from {found['models']} model(s), {found['bytes'] / 1e6:.1f} MB")
    if found["entries"]:
        stamp = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")  # noqa: E731
        print(f"oldest {stamp(found['oldest'])}, newest {stamp(found['newest'])}")
    return 0


def clear(args) -> int:
    from evalkit.backends import request_cache

    removed = request_cache.clear()
    print(f"request cache: removed {removed} answers")
    return 0
