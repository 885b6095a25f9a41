"""The board's read-only views of the store: two runs side by side as `evalkit report` shows them, the
questions that flipped between them, and the nightly gate's history. Every figure comes from the same
code as the CLI's (report.compare, the gate), so the board and the terminal never disagree."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from evalkit.board.web import page
from evalkit.errors import EvalkitError

router = APIRouter()
FLIPS_SHOWN = 200  # per direction; the counts above the lists are always complete


def _run_choices(store: str) -> list[dict]:
    from evalkit.store.frames import runs_with_scores

    frame = runs_with_scores(store)
    frame = frame[frame.kind == "evaluation"]
    return frame.drop_duplicates("id").sort_values("id", ascending=False).head(300).to_dict(orient="records")


@router.get("/compare")
def compare_page(request: Request, base: str = "", candidate: str = "", allow_mismatch: bool = False):
    """``?base=REF&candidate=REF``: a run id or a model name, as `evalkit report` takes them."""
    from evalkit.report.html import report_context

    store = request.app.state.store
    if not base or not candidate:
        return page(request, "board_compare_pick.html.j2", page_title="compare runs", choices=_run_choices(store))
    try:
        context = report_context(base, candidate, store, allow_mismatch=allow_mismatch)
    except EvalkitError as exc:
        raise HTTPException(400, str(exc)) from None
    context["plotly_src"] = f"{request.scope.get('root_path', '')}/assets/plotly.js"
    return page(request, "board_compare.html.j2", page_title="compare runs", base_ref=base, candidate_ref=candidate,
                allow_mismatch=allow_mismatch, **context)


@router.get("/compare/flips")
def flips_page(request: Request, base: str, candidate: str, task: str, allow_mismatch: bool = False):
    """The paired samples of one task whose right/wrong changed (or, for BLEU/ROUGE tasks, every pair with its
    two scores), each shown with its question or instruction and its reference."""
    from evalkit.report.compare import paired_samples
    from evalkit.report.pick import choose

    store = request.app.state.store
    try:
        choice = choose(base, candidate, store, [task], allow_mismatch)
        a, b = choice.base.results[task], choice.candidate.results[task]
        pairs, notes = paired_samples(task, a, b)
    except EvalkitError as exc:
        raise HTTPException(400, str(exc)) from None
    texts = _texts(a, [x for x, _ in pairs])
    rows = [{"subject": x.get("subject", ""), "index": x.get("index"), "text": texts.get(_key(x)),
             "gold": x.get("gold", x.get("reference", "")), "base": x.get("prediction", ""), "candidate": y.get("prediction", ""),
             "base_correct": x.get("correct"), "candidate_correct": y.get("correct"),
             "base_score": x.get(a.metric), "candidate_score": y.get(a.metric)} for x, y in pairs]
    right_to_wrong = [r for r in rows if r["base_correct"] is True and r["candidate_correct"] is False]
    wrong_to_right = [r for r in rows if r["base_correct"] is False and r["candidate_correct"] is True]
    scored = [] if right_to_wrong or wrong_to_right or any(isinstance(r["base_correct"], bool) for r in rows) else rows
    return page(request, "board_flips.html.j2", page_title="compare runs", task=task, notes=notes, paired=len(pairs),
                base_label=choice.base.label, candidate_label=choice.candidate.label, metric=a.metric,
                right_to_wrong=right_to_wrong[:FLIPS_SHOWN], wrong_to_right=wrong_to_right[:FLIPS_SHOWN],
                counts=(len(right_to_wrong), len(wrong_to_right)), scored=scored[:FLIPS_SHOWN])


def _key(row: dict) -> tuple[str, str]:
    return str(row.get("subject", "")), str(row.get("index"))


def _texts(result, rows: list[dict]) -> dict[tuple[str, str], str]:
    """(subject, index) -> the question with its options (multiple choice) or the instruction (generation),
    read back from the task's data; missing where the spec or its data moved."""
    from evalkit.report.samples import instructions
    from evalkit.tasks.mc_data import load_split
    from evalkit.tasks.registry import resolve_tasks

    block = result.result or {}
    if result.task_type != "multiple_choice":
        return {("", index): text for index, text in instructions(block, rows).items()}
    try:
        spec = resolve_tasks(str(block.get("spec")))[0].spec
    except (EvalkitError, OSError, IndexError, AttributeError):
        return {}
    split = block.get("split") or spec.eval_split
    texts = {}
    for subject in sorted({str(r.get("subject", "")) for r in rows}):
        try:
            questions = load_split(spec, subject, split)
        except (EvalkitError, OSError):
            continue
        for q in questions:
            options = "\n".join(f"{label}. {choice}" for label, choice in zip(q.labels, q.choices))
            texts[(subject, str(q.index))] = f"{q.question}\n{options}"
    return texts


@router.get("/nightly")
def nightly_page(request: Request):
    """Each night's verdict per suite and model, newest first, with links to what flipped on each task."""
    from evalkit.store.query import list_runs
    from evalkit.store.tags import nights

    store = request.app.state.store
    task_of = {run.id: [t.task for t in run.tasks] for run in list_runs(store, kind="evaluation")}
    rows = []
    for entry in nights(store):
        candidate_by_task = {task: run for run in entry.candidate_runs for task in task_of.get(run, [])}
        baseline_by_task = {task: run for run in entry.baseline_runs for task in task_of.get(run, [])}
        links = [{"task": task, "base": baseline_by_task[task], "candidate": run}
                 for task, run in candidate_by_task.items() if task in baseline_by_task]
        rows.append({"suite": entry.suite, "night": entry.night, "model": entry.model, "verdict": entry.verdict,
                     "exit_code": entry.exit_code, "failing": entry.failing, "links": links})
    return page(request, "board_nightly.html.j2", page_title="nightly history", rows=rows)
