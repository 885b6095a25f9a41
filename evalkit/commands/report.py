"""``evalkit report --base A --candidate B``: one self-contained HTML file comparing two models from the
results store (scores, deltas with 95% intervals, paired significance per task/subject/category, profiler
figures, charts). Per task it compares the base's newest run with the candidate's newest run on the same
questions and prompts, or refuses; a run id as --base/--candidate picks that run, --allow-mismatch compares
unlike runs anyway (on the questions both answered, under a red banner)."""

from __future__ import annotations

STORE_HELP = "results store: SQLite path or SQLAlchemy URL (default: $EVALKIT_STORE or the user data dir)"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("report", help="HTML report: candidate vs base with paired significance tests",
                              description=__doc__)
    p.add_argument("--base", required=True, help="model name, label, path, model key or run id")
    p.add_argument("--candidate", required=True, help="model name, label, path, model key or run id")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="compare the newest runs even when they did not answer the same questions with the same prompts "
                        "(by default the report takes the newest comparable runs, or refuses)")
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: every task both have)")
    p.add_argument("--output", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--force", action="store_true", help="replace --output if it exists")
    p.add_argument("--store", default=None, metavar="URL", help=STORE_HELP)
    p.set_defaults(func=run)


def run(args) -> int:
    from evalkit.report import build_report

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    path, data = build_report(args.base, args.candidate, args.output, args.store, tasks, args.force, args.allow_mismatch)
    base, candidate = data["base"]["label"], data["candidate"]["label"]
    for line in data["mismatches"]:
        print(f"MISMATCH: {line}")
    for row in data["summary"]:
        interval = f", 95% CI {row['delta_ci'][0]:+.2f}..{row['delta_ci'][1]:+.2f}" if row.get("delta_ci") else ""
        print(f"{row['task']} {row['metric']}: {base} {row['base']:.2f} -> {candidate} {row['candidate']:.2f} "
              f"({row['delta']:+.2f}{interval}; paired n {row['n']}): {row['verdict']}")
    print(f"report: {path.resolve()}")
    return 0
