"""``evalkit report --base A --candidate B``: one self-contained HTML file comparing two models from the
results store (scores, deltas, paired significance per task/subject/category, profiler figures, charts)."""

from __future__ import annotations

STORE_HELP = "results store: SQLite path or SQLAlchemy URL (default: $EVALKIT_STORE or the user data dir)"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("report", help="HTML report: candidate vs base with paired significance tests",
                              description=__doc__)
    p.add_argument("--base", required=True, help="model name, label, path, model key or run id")
    p.add_argument("--candidate", required=True, help="model name, label, path, model key or run id")
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: every task both have)")
    p.add_argument("--output", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--force", action="store_true", help="replace --output if it exists")
    p.add_argument("--store", default=None, metavar="URL", help=STORE_HELP)
    p.set_defaults(func=run)


def run(args) -> int:
    from evalkit.report import build_report

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    path, data = build_report(args.base, args.candidate, args.output, args.store, tasks, args.force)
    base, candidate = data["base"]["label"], data["candidate"]["label"]
    for row in data["summary"]:
        print(f"{row['task']} {row['metric']}: {base} {row['base']:.2f} -> {candidate} {row['candidate']:.2f} "
              f"({row['delta']:+.2f}): {row['verdict']}")
    print(f"report: {path.resolve()}")
    return 0
