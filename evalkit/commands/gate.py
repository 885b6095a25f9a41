"""``evalkit gate --baseline REF --candidate REF``: exit 0 (no regression), 1 (regression), 2 (bad input).

REF: a results_*.json file, a run id, accepted:MODEL[@SUITE] or latest:MODEL; comma-separate several
(e.g. the per-task runs of one night). Multiple choice and exact match (gsm8k): McNemar's exact test on
per-question right/wrong; BLEU/ROUGE: paired bootstrap on per-sample scores; Holm-corrected; a regression
must also exceed --min-effect.
"""

from __future__ import annotations

from evalkit.commands.report import STORE_HELP
from evalkit.errors import EvalkitError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("gate", help="regression verdict: candidate vs baseline (exit 0 pass, 1 regression)",
                              description=__doc__)
    p.add_argument("--baseline", required=True, metavar="REF", help="results file, run id, accepted:MODEL[@SUITE], latest:MODEL")
    p.add_argument("--candidate", required=True, metavar="REF", help="the same kinds of reference")
    p.add_argument("--suite", default=None, metavar="YAML", help="take the thresholds from this nightly suite's gate: block")
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: every task both sides have)")
    p.add_argument("--alpha", type=float, default=None, help="significance level, Holm-corrected (default 0.05)")
    p.add_argument("--min-effect", type=float, default=None, metavar="POINTS",
                   help="a regression must drop more than this many points (default 1)")
    p.add_argument("--floor", action="append", default=[], metavar="TASK=POINTS",
                   help="absolute floor judged by the one-sided lower bound, e.g. cmmlu=30 (repeatable)")
    p.add_argument("--summary", default=None, metavar="MD", help="write the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)")
    p.add_argument("--verdict", default=None, metavar="JSON", help="write the JSON verdict here")
    p.add_argument("--store", default=None, metavar="URL", help=STORE_HELP)
    p.set_defaults(func=run)


def thresholds_from(args):
    from pydantic import ValidationError

    from evalkit.gate import Thresholds

    base = {}
    if args.suite:
        from evalkit.nightly.suite import load_suite

        base = load_suite(args.suite).gate.model_dump()
    if args.alpha is not None:
        base["alpha"] = args.alpha
    if args.min_effect is not None:
        base["min_effect"] = args.min_effect
    for text in args.floor:
        task, sep, value = text.partition("=")
        try:
            base.setdefault("floors", {})[task.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not task.strip():
            raise EvalkitError(f"--floor {text!r}: use TASK=POINTS, e.g. --floor cmmlu=30")
    try:
        return Thresholds(**base)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise EvalkitError(f"gate threshold {'.'.join(str(x) for x in first['loc'])}: {first['msg']}") from None


def run(args) -> int:
    from evalkit.gate import gate, resolve_side
    from evalkit.gate import output

    thresholds = thresholds_from(args)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    verdict = gate(resolve_side(args.baseline, args.store), resolve_side(args.candidate, args.store), thresholds, tasks)
    print(output.table(verdict))
    output.write(args.summary, output.markdown(verdict))
    output.write(args.verdict, output.to_json(verdict))
    return verdict["exit_code"]
