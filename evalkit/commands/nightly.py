"""``evalkit nightly SUITE.yaml``: run every model on every task of the suite, record into the store, gate
against the baseline (last accepted run or pinned files), rebuild the leaderboard and reports, accept on a
pass; exit with the gate's code (0 pass, 1 regression, 2 bad input). A rerun the same night resumes."""

from __future__ import annotations

from evalkit.commands.report import STORE_HELP


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("nightly", help="the nightly regression job of a suite file (exit 1 on a regression)",
                              description=__doc__)
    p.add_argument("suite", help="suite YAML, e.g. suites/smoke.yaml")
    p.add_argument("--night", default=None, help="night id (default: today's UTC date); a rerun with the same id resumes")
    p.add_argument("--output", default=None, metavar="DIR", help="results, verdicts and reports (default: the suite's output)")
    p.add_argument("--leaderboard", default=None, metavar="DIR", help="leaderboard site (default: the suite's leaderboard.output)")
    p.add_argument("--summary", default=None, metavar="MD",
                   help="also append the Markdown summary to this file (e.g. $GITHUB_STEP_SUMMARY)")
    p.add_argument("--store", default=None, metavar="URL", help=STORE_HELP)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from evalkit.nightly import load_suite, run_nightly

    suite = load_suite(args.suite)
    result = run_nightly(suite, night=args.night, output=args.output, store=args.store, leaderboard=args.leaderboard)
    root = Path(args.output or suite.output)
    if args.summary:
        with open(args.summary, "a", encoding="utf-8") as handle:
            handle.write((root / "summary.md").read_text(encoding="utf-8"))
    print(f"nightly {result['suite']} {result['night']}: {result['verdict']} (exit {result['exit_code']}); "
          f"verdict {root / 'verdict.json'}, leaderboard {result['leaderboard']}")
    return result["exit_code"]
