"""The gate's checks: paired tests per task / category / subject, absolute floors, profiler figures.

The paired tests and their per-question pairing are the report's (``evalkit.report.compare``:
McNemar's exact test for multiple choice and exact match, a paired bootstrap for BLEU/ROUGE); the gate
adds the refusal of unequal prompts, Holm's correction, the minimum effect, floors and tolerances.
"""

from __future__ import annotations

from evalkit.errors import EvalkitError
from evalkit.gate.holm import holm
from evalkit.gate.power import POWER, detectable_drop, partial_text
from evalkit.gate.sides import GateSide
from evalkit.gate.thresholds import Thresholds
from evalkit.report import compare
from evalkit.report.figures import PROFILE_FIGURES, PROFILE_LABELS
from evalkit.report.profiler import unlike
from evalkit.report.samples import (
    read_samples,
    right_or_wrong,
    sample_key,
    verify_summary,
)

REGRESSION, WORSE_SMALL, BETTER, SAME, UNTESTED = ("regression", "worse (below the minimum effect)", "better",
                                                   "no detectable difference", "not tested")


def check_same_prompts(task: str, base, candidate) -> None:
    """Refuse (one line, exit 2) unless both runs answered the same items with the same prompt text."""
    rows = {}
    for side, result in (("baseline", base), ("candidate", candidate)):
        samples = read_samples(result.samples_file)
        if samples is None:
            raise EvalkitError(f"{task}: the {side}'s per-sample file {result.samples_file} is missing; the gate needs "
                               "per-question outcomes: keep samples_*.jsonl next to its results file")
        verify_summary(task, result, samples)  # the verdict rests on the samples: a summary they contradict is refused
        rows[side] = {sample_key(r): r.get("prompt_sha256") for r in samples}
    a, b = rows["baseline"], rows["candidate"]
    differ = sorted((k for k in a.keys() | b.keys() if a.get(k) != b.get(k)), key=str)
    if differ:
        subject, index = differ[0]
        where = f"{subject} #{index}" if subject else f"#{index}"
        raise EvalkitError(f"{task}: the two runs did not see the same prompts ({len(differ)} of {len(a.keys() | b.keys())} "
                           f"items differ, first {where}); evaluate both with the same task spec, --limit and --num-fewshot")


def _paired_rows(task: str, base, candidate, thresholds: Thresholds) -> list[dict]:
    if base.task_type == "multiple_choice":
        section = compare._multiple_choice(task, base, candidate)
        rows = [section["overall"], *section["categories"], *section["subjects"]]
    elif base.task_type == "generation":
        section = compare._generation(task, base, candidate)
        rows = [m for m in section["metrics"] if m["metric"] == base.metric][:1]
    else:
        section = compare._overall_only(task, base, candidate)
        rows = section["metrics"]
    out = []
    for row in rows:
        tested = row["p_value"] is not None and (row["level"] == "overall" or (row["n"] or 0) >= thresholds.min_group_n)
        out.append({"check": "paired", "task": task, "level": row["level"],
                    "group": row["group"], "name": row.get("name"),
                    "metric": base.metric, "base": row["base"], "candidate": row["candidate"], "delta": row["delta"],
                    "n": row["n"], "test": row["test"] if tested else None,
                    "p_value": row["p_value"] if tested else None, "detail": row.get("detail") or {}})
    return out


def _judge_paired(rows: list[dict], thresholds: Thresholds) -> None:
    """Holm within each family (the tasks' overall rows; each task's categories; each task's subjects)."""
    families: dict[tuple, list[dict]] = {}
    for row in rows:
        family = ("tasks",) if row["level"] == "overall" else (row["task"], row["level"])
        families.setdefault(family, []).append(row)
    for members in families.values():
        tested = [r for r in members if r["p_value"] is not None]
        for row, adjusted in zip(tested, holm([r["p_value"] for r in tested])):
            row["p_adjusted"] = adjusted
        for row in members:
            row["threshold"] = f"p<{thresholds.alpha:g} (Holm, {len(tested)} tests) and drop >{thresholds.min_effect:g} pt"
            p = row.get("p_adjusted")
            if p is None:
                row["status"] = UNTESTED
            elif p < thresholds.alpha and row["delta"] < -thresholds.min_effect:
                row["status"] = REGRESSION
            elif p < thresholds.alpha and row["delta"] < 0:
                row["status"] = WORSE_SMALL
            elif p < thresholds.alpha and row["delta"] > 0:
                row["status"] = BETTER
            else:
                row["status"] = SAME


def _floor_row(task: str, result, floor: float, alpha: float) -> dict:
    """Pass when the one-sided (1 - alpha) lower bound of the candidate's score clears the floor:
    Wilson's interval for accuracy and exact match (scipy), mean - z * standard error for per-sample BLEU/ROUGE."""
    import numpy as np
    from scipy.stats import binomtest, norm

    samples = read_samples(result.samples_file) or []
    if right_or_wrong(result):  # accuracy, exact match: points of the share right
        n = len(samples)
        k = sum(bool(r.get("correct")) for r in samples)
        lower = binomtest(k, n).proportion_ci(1 - 2 * alpha, method="wilson").low * 100 if n else float("nan")
        score, bound = 100 * k / n if n else float("nan"), "Wilson"
    else:
        values = np.asarray([r[result.metric] for r in samples if result.metric in r], dtype=float)
        n = len(values)
        score = float(values.mean()) if n else float("nan")
        spread = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
        lower, bound = score - norm.ppf(1 - alpha) * spread, "normal"
    status = "pass" if lower >= floor else "fail"
    return {"check": "floor", "task": task, "level": "overall", "group": "all", "metric": result.metric, "base": None,
            "candidate": score, "delta": None, "n": n, "test": f"one-sided {bound} lower bound {lower:.2f}",
            "p_value": None, "threshold": f">= {floor:g} (lower bound, alpha {alpha:g})", "status": status,
            "lower_bound": lower}


def _profile_rows(base: GateSide, candidate: GateSide, thresholds: Thresholds) -> list[dict]:
    """Each side's figures from its newest evaluation run; memory and speed judged only like with like
    (same backend, same device): an API client's 448 MB is no saving on an in-process 1,820 MB."""
    better_high = {key: high for key, _, high in PROFILE_FIGURES}
    fa, fb = base.figures(), candidate.figures()
    why = unlike(base.source_run, candidate.source_run)
    rows = []
    for key, rule in thresholds.profile.items():
        if key not in better_high:
            raise EvalkitError(f"gate profile figure {key!r} is unknown; use one of {', '.join(better_high)}")
        x, y = fa.get(key), fb.get(key)
        if x is None or y is None or x == 0:
            continue
        change = (y - x) / abs(x)
        worse_by = -change if better_high[key] else change
        status = "pass" if worse_by <= rule.tolerance else ("fail" if rule.fail else "warn")
        if why and not key.startswith("perplexity"):
            status = "not compared"
        rows.append({"check": "profile", "task": PROFILE_LABELS[key], "level": "profile", "group": key, "metric": key,
                     "base": x, "candidate": y, "delta": y - x, "n": None, "change": change,
                     "test": f"relative change {change:+.1%}", "p_value": None,
                     "threshold": (f"not compared: {why}" if status == "not compared" else
                                   f"worse by <= {rule.tolerance:.0%} ({'fail' if rule.fail else 'warn'})"),
                     "status": status})
    return rows


def _detectable(rows: list[dict], base: GateSide, candidate: GateSide, alpha: float) -> dict[str, dict]:
    """Per task, the drop its overall check would detect (power 0.8) at the first Holm step's level alpha / m."""
    overall = [r for r in rows if r["check"] == "paired" and r["level"] == "overall" and r["p_value"] is not None]
    level = alpha / max(1, len(overall))
    out = {}
    for row in overall:
        drop = detectable_drop(row, base.results[row["task"]], candidate.results[row["task"]], level)
        row["detectable_drop"] = drop
        out[row["task"]] = {"n": row["n"], "drop": drop, "alpha": level, "power": POWER, "test": row["test"]}
    return out


def gate(base: GateSide, candidate: GateSide, thresholds: Thresholds | None = None,
         tasks: list[str] | None = None) -> dict:
    """The verdict: every row, the failing ones, and the exit code (0 pass, 1 regression)."""
    thresholds = thresholds or Thresholds()
    shared = [t for t in candidate.results if t in base.results]
    wanted = tasks or shared
    missing = [t for t in wanted if t not in shared]
    if missing or not wanted:
        raise EvalkitError(f"task(s) {', '.join(missing) or '(none in common)'} not in both the baseline ({base.ref}) "
                           f"and the candidate ({candidate.ref}); evaluate both on the same tasks")
    for task in wanted:
        a, b = base.results[task], candidate.results[task]
        if a.task_type != b.task_type:
            raise EvalkitError(f"{task}: the baseline is a {a.task_type} result and the candidate a {b.task_type} one; "
                               "they are different tasks under one name")
        check_same_prompts(task, a, b)
    rows = [row for task in wanted for row in _paired_rows(task, base.results[task], candidate.results[task], thresholds)]
    _judge_paired(rows, thresholds)
    for task, floor in thresholds.floors.items():
        if task in wanted:
            rows.append(_floor_row(task, candidate.results[task], floor, thresholds.alpha))
    detectable = _detectable(rows, base, candidate, thresholds.alpha)
    rows += _profile_rows(base, candidate, thresholds)
    partial = {}
    for task in wanted:
        texts = {side: partial_text(s.run_of(task), s.results[task]) for side, s in (("baseline", base), ("candidate", candidate))}
        text = texts["candidate"] or texts["baseline"]
        if text:
            partial[task] = f"{base.results[task].n} items: {text}"
    failing = [r for r in rows if r["status"] in (REGRESSION, "fail")]
    return {"verdict": "regression" if failing else "pass", "exit_code": 1 if failing else 0,
            "partial": partial, "detectable": detectable,
            "baseline": {"ref": base.ref, "label": base.label, "runs": base.run_ids},
            "candidate": {"ref": candidate.ref, "label": candidate.label, "runs": candidate.run_ids},
            "thresholds": thresholds.model_dump(), "tasks": wanted, "rows": rows, "failing": failing,
            "warnings": [r for r in rows if r["status"] == "warn"]}
