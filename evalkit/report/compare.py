"""Base vs candidate from the results store: scores, deltas and paired tests per task, subject and category.

Right/wrong scores (multiple-choice accuracy, generation exact match) are paired with McNemar's exact test;
per-sample BLEU/ROUGE with the paired bootstrap."""

from __future__ import annotations

from evalkit.errors import EvalkitError
from evalkit.report.pick import choose, run_backend, run_device
from evalkit.report.profiler import profile_rows
from evalkit.report.samples import instructions, pair_rows, read_samples, verify_summary
from evalkit.report.significance import (
    mcnemar_exact,
    newcombe_paired_interval,
    paired_bootstrap,
    significant,
    verdict,
    wilson_interval,
)
from evalkit.store.identity import describe, model_label
from evalkit.store.query import Side

GENERATION_METRICS = ("bleu-4", "rouge-1", "rouge-2", "rouge-l")  # per-sample means: paired bootstrap
EXACT_MATCH = "exact_match"  # right/wrong per sample: McNemar, like multiple-choice accuracy
EXAMPLES_SHOWN = 8  # paired predictions printed per generation task


def compare(base_ref: str, candidate_ref: str, store: str | None = None, tasks: list[str] | None = None,
            allow_mismatch: bool = False) -> dict:
    """Per task, the base's newest result against the candidate's newest comparable one (``pick.choose``)."""
    choice = choose(base_ref, candidate_ref, store, tasks, allow_mismatch)
    base, candidate = choice.base, choice.candidate
    shared = [t for t in base.results if t in candidate.results]
    sections = []
    for task in shared:
        a, b = base.results[task], candidate.results[task]
        if a.task_type == "multiple_choice":
            sections.append(_multiple_choice(task, a, b))
        elif a.task_type == "generation":
            sections.append(_generation(task, a, b))
        else:
            sections.append(_overall_only(task, a, b))
    data = {
        "base": _side_info(base), "candidate": _side_info(candidate),
        "tasks": sections,
        "summary": [row for s in sections for row in s["summary"]],
        "choice_notes": choice.notes, "mismatches": choice.mismatches,
    }
    data["profile"], data["profile_unlike"] = profile_rows(base, candidate)
    return data


def _side_info(side: Side) -> dict:
    runs = sorted({r.id: r for r in side.runs.values()}.values(), key=lambda r: r.id)
    latest = runs[-1]  # short label from the identity (stores written before short labels kept long ones)
    return {"label": model_label(latest.model_name, latest.model_identity or {}) if runs else side.label,
            "details": describe(latest.model_identity or {}), "model_key": side.model_key,
            "runs": [{"id": r.id, "created_at": r.created_at, "evalkit_version": r.evalkit_version,
                      "backend": run_backend(r), "device": run_device(r),
                      "tasks": [t for t, run in side.runs.items() if run.id == r.id]} for r in runs]}


def _row(level: str, group: str, metric: str, base: float | None, candidate: float | None, test=None,
         scale: float = 1.0, n=None) -> dict:
    delta = candidate - base if base is not None and candidate is not None else None
    # every score compared here (accuracy, BLEU, ROUGE) is better when higher; a significant delta is coloured by it
    return {"level": level, "group": group, "metric": metric, "higher_is_better": True,
            "base": None if base is None else base * scale, "candidate": None if candidate is None else candidate * scale,
            "delta": None if delta is None else delta * scale, "n": test.n if test else n,  # n: the items actually paired
            "delta_ci": _delta_interval(test, scale), "significant": significant(test.p_value) if test else False,
            "test": test.test if test else None, "p_value": test.p_value if test else None,
            "verdict": test.verdict if test else "not tested", "detail": test.detail if test else {}}


def _delta_interval(test, scale: float) -> list[float] | None:
    """95% interval of the delta: Newcombe's for paired accuracies, the paired bootstrap's for per-sample scores."""
    if test is None or not test.n:
        return None
    detail = test.detail
    if "base_only" in detail:
        neither = test.n - detail["both"] - detail["base_only"] - detail["candidate_only"]
        low, high = newcombe_paired_interval(detail["both"], detail["base_only"], detail["candidate_only"], neither)
        return [low * scale, high * scale]
    return [value * scale for value in detail["ci95"]] if detail.get("ci95") else None


def _with_intervals(row: dict, n_base, n_candidate) -> dict:
    """Wilson 95% intervals (in %) of both accuracies of an accuracy row, from its value and n."""
    for side, n in (("base", n_base), ("candidate", n_candidate)):
        value = row[side]
        interval = wilson_interval(round(value / 100 * n), n) if value is not None and n else None
        row[f"{side}_ci"] = [interval[0] * 100, interval[1] * 100] if interval else None
    return row


def _scores(result, level: str) -> dict[str, dict]:
    return {s.group: {"value": s.value, "stderr": s.stderr, "n": s.n} for s in result.scores if s.level == level}


def _notes(task: str, a, b) -> list[str]:
    notes = []
    if a.spec_sha256 != b.spec_sha256:
        notes.append(f"{task}: the two runs used different task specs (spec hash {str(a.spec_sha256)[:10]} vs "
                     f"{str(b.spec_sha256)[:10]}); scores may not be comparable.")
    if a.prompt_sha256 != b.prompt_sha256:
        notes.append(f"{task}: the prompts differ between the runs (different few-shot, template or sample set); "
                     "paired tests use only the questions both answered.")
    if a.n != b.n:
        notes.append(f"{task}: base scored {a.n} items, candidate {b.n}.")
    return notes


def paired_samples(task: str, a, b) -> tuple[list, list[str]]:
    """Per-sample rows of both runs paired by item, and the notes on what could not be paired."""
    rows_a, rows_b = read_samples(a.samples_file), read_samples(b.samples_file)
    for result, rows in ((a, rows_a), (b, rows_b)):
        verify_summary(task, result, rows)  # a summary its own samples contradict is refused, never shown
    notes = _notes(task, a, b)
    if rows_a is None or rows_b is None:
        notes.append(f"{task}: a per-sample file is missing ({a.samples_file if rows_a is None else b.samples_file}); "
                     "significance was not computed.")
        return [], notes
    return pair_rows(rows_a, rows_b), notes


def _multiple_choice(task: str, a, b) -> dict:
    pairs, notes = paired_samples(task, a, b)
    # runs on other questions (forced with --allow-mismatch): every figure is taken on the questions both answered
    on_pairs = bool(pairs) and (len(pairs) != a.n or len(pairs) != b.n)

    def row(level: str, group: str, keep, stored_a: dict | None, stored_b: dict | None) -> dict | None:
        chosen = [(x, y) for x, y in pairs if keep(x)]
        test = mcnemar_exact([bool(x["correct"]) for x, _ in chosen], [bool(y["correct"]) for _, y in chosen]) if chosen else None
        if on_pairs:
            if not chosen:
                return None
            n_a = n_b = len(chosen)
            value_a = sum(bool(x["correct"]) for x, _ in chosen) / n_a
            value_b = sum(bool(y["correct"]) for _, y in chosen) / n_b
        else:
            value_a, value_b, n_a, n_b = stored_a["value"], stored_b["value"], stored_a["n"], stored_b["n"]
        return _with_intervals(_row(level, group, "acc", value_a, value_b, test, 100, n_a), n_a, n_b)

    subjects_a, subjects_b = _scores(a, "subject"), _scores(b, "subject")
    categories_a, categories_b = _scores(a, "category"), _scores(b, "category")
    subject_rows = [row("subject", s, lambda x, s=s: x.get("subject") == s, subjects_a[s], subjects_b[s])
                    for s in subjects_a if s in subjects_b]
    subject_names = {s: block.get("name") for s, block in (a.result.get("subjects") or {}).items()}
    subject_rows = [r for r in subject_rows if r is not None]
    for subject_row in subject_rows:
        subject_row["name"] = subject_names.get(subject_row["group"])
    members = _category_members(a.result)
    category_rows = []
    for c in (c for c in categories_a if c in categories_b):
        keep = (lambda x, c=c: x.get("subject") in members[c]) if c in members else (lambda x: False)
        category_row = row("category", c, keep, categories_a[c], categories_b[c])
        if category_row is not None:
            category_rows.append(category_row)
    overall = row("overall", "all", lambda x: True, {"value": a.score, "n": a.n}, {"value": b.score, "n": b.n})
    if on_pairs:
        notes.append(f"{task}: every figure is taken on the {len(pairs)} questions both runs answered (the base run scored "
                     f"{100 * a.score:.2f} on {a.n}, the candidate run {100 * b.score:.2f} on {b.n}).")
    if overall is None:  # no per-sample files: the stored scores, untested
        overall = _with_intervals(_row("overall", "all", "acc", a.score, b.score, None, 100, a.n), a.n, b.n)
    chart = {"groups": [r["group"] for r in category_rows],
             "base": [(r["base"], r["base_ci"]) for r in category_rows],
             "candidate": [(r["candidate"], r["candidate_ci"]) for r in category_rows]}
    return {"task": task, "type": "multiple_choice", "metric": "accuracy (%)", "overall": overall,
            "summary": [{**overall, "task": task}], "categories": category_rows, "subjects": subject_rows,
            "paired": len(pairs), "notes": notes, "chart": chart}


def _category_members(result: dict) -> dict[str, set]:
    """Subjects in each category, read from the task spec the run used (a subject may be in several)."""
    from evalkit.tasks.registry import resolve_tasks

    members: dict[str, set] = {}
    try:
        spec = resolve_tasks(result.get("spec") or "")[0].spec
    except (EvalkitError, OSError, IndexError):
        return members  # spec moved: categories keep their scores, without a paired test
    for key, subject in getattr(spec, "subjects", {}).items():
        for category in subject.categories:
            members.setdefault(category, set()).add(key)
    return members


def _exact_match_row(a, b, pairs: list) -> dict:
    """Exact match is right/wrong per sample: McNemar's exact test and Newcombe's interval, as for accuracy (in %)."""
    chosen = [(x, y) for x, y in pairs if isinstance(x.get("correct"), bool) and isinstance(y.get("correct"), bool)]
    test = mcnemar_exact([x["correct"] for x, _ in chosen], [y["correct"] for _, y in chosen]) if chosen else None
    value_a, value_b, n_a, n_b = a.score, b.score, a.n, b.n
    if chosen and (len(chosen) != a.n or len(chosen) != b.n):  # forced mismatch: the shares on the paired samples
        n_a = n_b = len(chosen)
        value_a, value_b = sum(x["correct"] for x, _ in chosen) / n_a, sum(y["correct"] for _, y in chosen) / n_b
    row = _with_intervals(_row("overall", EXACT_MATCH, EXACT_MATCH, value_a, value_b, test, 100, n_a), n_a, n_b)
    if row["delta_ci"]:  # the generation metrics table and chart read a row's interval from detail.ci95
        row["detail"] = {**row["detail"], "ci95": row["delta_ci"]}
    return row


def _sample_score(row: dict, metric: str):
    """A paired example's score: its metric value, or 100 / 0 for an exact-match sample right / wrong."""
    if metric == EXACT_MATCH:
        return None if not isinstance(row.get("correct"), bool) else 100.0 * row["correct"]
    return row.get(metric)


def _generation(task: str, a, b) -> dict:
    pairs, notes = paired_samples(task, a, b)
    metrics = [_exact_match_row(a, b, pairs)] if a.metric == EXACT_MATCH and b.metric == EXACT_MATCH else []
    for metric in GENERATION_METRICS:
        base_value, candidate_value = (a.result or {}).get(metric), (b.result or {}).get(metric)
        if base_value is None or candidate_value is None:
            continue
        scored = [(x, y) for x, y in pairs if metric in x and metric in y]
        test = paired_bootstrap([x[metric] for x, _ in scored], [y[metric] for _, y in scored]) if scored else None
        if scored and (len(scored) != a.n or len(scored) != b.n):  # forced mismatch: the means of the paired samples
            base_value = sum(x[metric] for x, _ in scored) / len(scored)
            candidate_value = sum(y[metric] for _, y in scored) / len(scored)
        metrics.append(_row("overall", metric, metric, base_value, candidate_value, test, 1.0, a.n))
    extra = []
    for metric in ("sacrebleu", "chrf", "chrf++"):  # corpus scores: shown, not tested
        if (a.result or {}).get(metric) is not None and (b.result or {}).get(metric) is not None:
            extra.append(_row("overall", metric, metric + " (corpus, not tested)", a.result[metric], b.result[metric],
                              None, 1.0, a.n))
    inputs = instructions(a.result or {}, [x for x, _ in pairs[:EXAMPLES_SHOWN]])
    examples = [{"index": x.get("index"), "instruction": inputs.get(str(x.get("index"))),
                 "reference": x.get("reference", ""), "base": x.get("prediction", ""),
                 "candidate": y.get("prediction", ""), "base_score": _sample_score(x, a.metric),
                 "candidate_score": _sample_score(y, a.metric)}
                for x, y in pairs[:EXAMPLES_SHOWN]]
    headline = next((m for m in metrics if m["metric"] == a.metric), metrics[0] if metrics else None)
    summary = [{**headline, "task": task}] if headline else []
    return {"task": task, "type": "generation", "metric": a.metric, "metrics": metrics + extra, "summary": summary,
            "paired": len(pairs), "examples": examples, "headline": a.metric, "notes": notes,
            "chart": {"metrics": [m["metric"] for m in metrics], "base": [m["base"] for m in metrics],
                      "candidate": [m["candidate"] for m in metrics],
                      "delta_ci": [m["detail"].get("ci95") for m in metrics]}}


def _overall_only(task: str, a, b) -> dict:
    row = _row("overall", "all", a.metric, a.score, b.score, None, 1.0, a.n)
    row["verdict"] = "not tested (no paired per-item test for this task type)"
    return {"task": task, "type": a.task_type, "metric": a.metric, "summary": [{**row, "task": task}],
            "metrics": [row], "notes": _notes(task, a, b), "chart": None}


__all__ = ["compare", "verdict"]
