"""``evalkit leaderboard [DEFINITION.yaml] --output DIR``: a static HTML leaderboard site from the results store."""

from __future__ import annotations

from evalkit.commands.report import STORE_HELP


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("leaderboard", help="static HTML leaderboard (sortable, filterable) from the results store",
                              description=__doc__)
    p.add_argument("definition", nargs="?", default=None, help="leaderboard YAML (default leaderboards/default.yaml)")
    p.add_argument("--output", default="leaderboard", help="directory for index.html and models/*.html (default ./leaderboard)")
    p.add_argument("--force", action="store_true", help="write into a non-empty directory not made by evalkit")
    p.add_argument("--store", default=None, metavar="URL", help=STORE_HELP)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from evalkit.errors import EvalkitError
    from evalkit.report import build_leaderboard

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise EvalkitError(f"--output {output} is a file; the leaderboard is a directory (index.html, models/): "
                           "choose a directory path")
    path, rows = build_leaderboard(args.definition, args.output, args.store, args.force)
    ranked = [r["label"] for r in rows if not r["partial"]]
    partial = [f"{r['label']} ({r['partial_text']}) {r['setting'][1] if r['setting'][1] is not None else '?'}-shot, {r['runs']} run(s)"
               for r in rows if r["partial"]]
    models = list(dict.fromkeys(r["label"] for r in rows))
    print(f"{len(models)} model(s): {', '.join(models)}")
    print(f"ranked on full runs: {', '.join(ranked) or 'none yet (every run used --limit or a subject subset)'}")
    if partial:
        shown = ", ".join(partial[:8]) + (f", and {len(partial) - 8} more" if len(partial) > 8 else "")
        print(f"{len(partial)} partial run(s), not ranked (a section of their own, one table per setting): {shown}")
    print(f"leaderboard: {path.resolve()}")
    return 0
