"""The blind arena: two stored runs of one generation task, a prompt, the two answers in random order.

A trial row is written when a pair is shown (which run is left is decided by ``secrets``, not the page), so
the page carries only the trial's id: no model name reaches the browser before the vote. Rankings fit
Bradley-Terry (ranking.py) to the votes, anchored at the base, and set the votes beside ROUGE-L's preference
on the same pairs.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

from sqlalchemy import select

from evalkit.board.ranking import Vote as RankedVote
from evalkit.board.ranking import ranking
from evalkit.errors import EvalkitError
from evalkit.report.samples import instructions, pair_rows, read_samples, sample_key
from evalkit.store.engine import open_store
from evalkit.store.schema import Run, TaskResult, Vote

VERDICTS = ("left", "right", "tie", "both_bad")


def _result(store: str, run_id: int, task: str | None = None) -> tuple[Run, TaskResult]:
    factory, _ = open_store(store)
    with factory() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise EvalkitError(f"no run {run_id} in the store")
        results = [t for t in run.tasks if t.task_type == "generation" and (task is None or t.task == task)]
        if not results:
            raise EvalkitError(f"run {run_id} has no generation task{f' {task}' if task else ''} to judge")
        return run, results[0]


def pairs(store: str, base_run: int, other_run: int) -> tuple[str, list[tuple[dict, dict]], dict[str, str]]:
    """(task, [(base row, other row)] for the samples both answered, {sample index: prompt text})."""
    _, base = _result(store, base_run)
    _, other = _result(store, other_run, base.task)
    rows = pair_rows(read_samples(base.samples_file) or [], read_samples(other.samples_file) or [])
    if not rows:
        raise EvalkitError(f"runs {base_run} and {other_run} share no samples of {base.task}")
    return base.task, rows, instructions(base.result or {}, [a for a, _ in rows])


def next_trial(store: str, base_run: int, other_run: int, voter: str) -> dict | None:
    """A new trial on a sample this voter has not judged for these runs (None when all are judged)."""
    task, rows, prompts = pairs(store, base_run, other_run)
    factory, _ = open_store(store)
    with factory.begin() as session:
        done = set(session.scalars(select(Vote.sample).where(
            Vote.voter == voter, Vote.verdict.is_not(None), Vote.task == task,
            Vote.left_run.in_([base_run, other_run]), Vote.right_run.in_([base_run, other_run]))))
        left_over = [pair for pair in rows if sample_key(pair[0])[1] not in done]
        if not left_over:
            return None
        base_row, other_row = left_over[secrets.randbelow(len(left_over))]
        runs = {base_run: session.get(Run, base_run), other_run: session.get(Run, other_run)}
        flip = secrets.randbelow(2) == 1
        (left, left_row), (right, right_row) = ((other_run, other_row), (base_run, base_row)) if flip else \
            ((base_run, base_row), (other_run, other_row))
        trial = Vote(task=task, sample=sample_key(base_row)[1], left_run=left, right_run=right,
                     left_key=runs[left].model_key, right_key=runs[right].model_key,
                     base_key=runs[base_run].model_key, voter=voter)
        session.add(trial)
        session.flush()
        return {"id": trial.id, "task": task, "prompt": prompts.get(trial.sample, ""), "left": left_row["prediction"],
                "right": right_row["prediction"], "remaining": len(left_over)}


def vote(store: str, trial_id: int, verdict: str, voter: str) -> dict:
    """Record the verdict on a shown trial; returns the revealed names."""
    if verdict not in VERDICTS:
        raise EvalkitError(f"verdict {verdict!r}: use one of {', '.join(VERDICTS)}")
    factory, _ = open_store(store)
    with factory.begin() as session:
        trial = session.get(Vote, trial_id)
        if trial is None or trial.voter != voter:
            raise EvalkitError(f"no trial {trial_id} shown to {voter}")
        if trial.verdict is not None:
            raise EvalkitError(f"trial {trial_id} was already judged")
        trial.verdict = verdict
        shown = trial.shown_at if trial.shown_at.tzinfo else trial.shown_at.replace(tzinfo=timezone.utc)
        trial.seconds = (datetime.now(timezone.utc) - shown).total_seconds()
        left, right = session.get(Run, trial.left_run), session.get(Run, trial.right_run)
        return {"left": left.model_label, "right": right.model_label, "verdict": verdict,
                "left_run": trial.left_run, "right_run": trial.right_run}


def rankings(store: str, task: str, rounds: int = 1000, seed: int = 1234) -> dict | None:
    """The task's ranking (ranking.ranking over model labels) plus ROUGE-L agreement; None without votes."""
    factory, _ = open_store(store)
    with factory() as session:
        votes = list(session.scalars(select(Vote).where(Vote.task == task, Vote.verdict.is_not(None))))
        runs = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(
            {v.left_run for v in votes} | {v.right_run for v in votes})))}
    if not votes:
        return None
    label = {run.model_key: run.model_label for run in runs.values()}
    bases = [v.base_key for v in votes]
    anchor = label[max(set(bases), key=bases.count)]
    ranked = ranking([RankedVote(label[v.left_key], label[v.right_key], v.verdict, f"{v.task}:{v.sample}")
                      for v in votes], anchor, rounds, seed)
    ranked["metric_agreement"] = _rouge_agreement(store, votes)
    return ranked


def _rouge_agreement(store: str, votes: list[Vote]) -> dict:
    """How often the human picked the side with the higher per-sample ROUGE-L (decided votes, no metric tie)."""
    scores: dict[int, dict[str, float]] = {}
    for run_id in {v.left_run for v in votes} | {v.right_run for v in votes}:
        _, result = _result(store, run_id)
        scores[run_id] = {sample_key(row)[1]: row.get("rouge-l") for row in read_samples(result.samples_file) or []}
    agree = compared = 0
    for v in votes:
        left, right = scores[v.left_run].get(v.sample), scores[v.right_run].get(v.sample)
        if v.verdict not in ("left", "right") or left is None or right is None or left == right:
            continue
        compared += 1
        agree += (left > right) == (v.verdict == "left")
    return {"compared": compared, "agree": agree, "rate": agree / compared if compared else None}
