"""Profiler rows of a comparison: each side's memory and speed figures from *one* run, compared only
like with like.

A figure from the candidate's API client (448 MB: an HTTP client, no weights) set against the base's
in-process run (1,820 MB) is no memory saving, and prefill from one run beside decode from another
is no one run's profile; so each side's figures come from the newest evaluation run behind its
compared results, every row names that run, and a delta is shown only when both runs used the same
backend on the same device. Perplexity is a property of the weights, so it may come from a
perplexity task or ``evalkit profile`` run of its own, which its row names.
"""

from __future__ import annotations

from evalkit.report.figures import PROFILE_FIGURES, hardware_text, run_figures
from evalkit.report.pick import run_backend, run_device

PERPLEXITY = ("perplexity", "perplexity_llamafactory")


def source_run(runs):
    """The newest evaluation run of ``runs`` (the one whose profile a side shows), or None."""
    evaluations = [r for r in runs if r.kind == "evaluation"]
    return max(evaluations, key=lambda r: r.id) if evaluations else None


def unlike(run_a, run_b) -> str | None:
    """Why two runs' memory and speed cannot be compared (backend or device differ); None when they can."""
    if run_a is None or run_b is None:
        return None
    setting_a, setting_b = (run_backend(run_a), run_device(run_a)), (run_backend(run_b), run_device(run_b))
    if setting_a == setting_b:
        return None
    return (f"base run #{run_a.id} used the {setting_a[0]} backend on {setting_a[1]}, candidate run #{run_b.id} "
            f"the {setting_b[0]} backend on {setting_b[1]}")


def _perplexity(side) -> tuple[dict, int | None]:
    for task, result in side.results.items():
        if result.task_type == "perplexity" and result.result:
            return {k: result.result.get(k) for k in PERPLEXITY if result.result.get(k) is not None}, side.runs[task].id
    if side.profile_run is not None:
        figures = run_figures(side.profile_run.profile)
        return {k: figures[k] for k in PERPLEXITY if k in figures}, side.profile_run.id
    return {}, None


def profile_rows(base, candidate) -> tuple[list[dict], str | None]:
    """(rows, why memory/speed are not compared or None); each row names the run of each figure."""
    run_a, run_b = source_run(base.runs.values()), source_run(candidate.runs.values())
    figures_a = run_figures(run_a.profile) if run_a is not None else {}
    figures_b = run_figures(run_b.profile) if run_b is not None else {}
    (perplexity_a, from_a), (perplexity_b, from_b) = _perplexity(base), _perplexity(candidate)
    why = unlike(run_a, run_b)
    rows = []
    for key, label, higher_is_better in PROFILE_FIGURES:
        if key in PERPLEXITY:
            x, y, runs, compared = perplexity_a.get(key), perplexity_b.get(key), (from_a, from_b), True
        else:
            x, y = figures_a.get(key), figures_b.get(key)
            runs, compared = (getattr(run_a, "id", None), getattr(run_b, "id", None)), why is None
        if x is None and y is None:
            continue
        rows.append({"key": key, "label": label, "base": x, "candidate": y, "higher_is_better": higher_is_better,
                     "delta": y - x if compared and x is not None and y is not None else None, "compared": compared,
                     "base_run": runs[0] if x is not None else None, "candidate_run": runs[1] if y is not None else None})
    rows.append({"key": "hardware", "label": "measured on", "higher_is_better": None, "delta": None, "compared": True,
                 "base": hardware_text(run_a.profile) if run_a is not None else "",
                 "candidate": hardware_text(run_b.profile) if run_b is not None else "",
                 "base_run": getattr(run_a, "id", None), "candidate_run": getattr(run_b, "id", None)})
    return rows, why
