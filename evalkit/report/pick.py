"""Which stored task results a report compares.

A model usually has several runs of a task (a quick ``--limit 3`` check through an API backend
beside the full in-process evaluation). Comparing the newest of each side would pair 3 questions
with 40 and call it a difference; so, per task, the report takes the base's newest result and the
candidate's newest result that answered *the same questions with the same prompts* (every
(subject, index) with the same per-sample ``prompt_sha256``, as the gate checks; for generation the
instruction's ``input_sha256``, since two models' chat templates wrap one instruction differently),
or refuses in one line naming what differs. ``--allow-mismatch`` compares the newest results anyway; the page then says so in a
red banner and every "paired n" is the number of questions actually paired.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.report.samples import read_samples, sample_key
from evalkit.store.query import Side, list_runs, matches_model
from evalkit.store.schema import Run, TaskResult

PICK_HINT = ("pick runs by id with --base RUN --candidate RUN (`evalkit runs` lists them), "
             "or pass --allow-mismatch to compare them anyway")


@dataclass
class Choice:
    base: Side
    candidate: Side
    notes: list[str] = field(default_factory=list)  # e.g. "the newest candidate run was skipped: ..."
    mismatches: list[str] = field(default_factory=list)  # forced comparisons of unlike runs (--allow-mismatch)


def run_backend(run: Run) -> str:
    """The backend a run was computed with: its results file's ``backend.name``, else its command line."""
    try:
        name = (json.loads(Path(run.results_file or "").read_text(encoding="utf-8")).get("backend") or {}).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    if name:
        return str(name)
    command = list(run.command or [])
    for i, word in enumerate(command):
        if word == "--backend" and i + 1 < len(command):
            return str(command[i + 1])
        if str(word).startswith("--backend="):
            return str(word).split("=", 1)[1]
    return "hf"  # evalkit run's default: transformers in process


def run_device(run: Run) -> str:
    """Where the model ran: its device, "a remote server" for an API backend (which records none)."""
    identity = run.model_identity or {}
    if identity.get("device"):
        return str(identity["device"])
    if "device" in identity:
        return "a remote server"
    return str(((run.profile or {}).get("hardware") or {}).get("gpu") or "cpu")


def describe_run(run: Run) -> str:
    return f"run #{run.id} ({run_backend(run)} backend, {run_device(run)})"


def _questions(result: TaskResult, cache: dict) -> dict | None:
    """{(subject, index): what was asked} of a result's samples, or None without a samples file. A generation
    sample's ``input_sha256`` is its instruction before any chat template (two model families wrap one
    instruction differently and still answer the same question); otherwise the prompt's own hash."""
    if result.id not in cache:
        rows = read_samples(result.samples_file)
        cache[result.id] = None if rows is None else {sample_key(r): r.get("input_sha256") or r.get("prompt_sha256")
                                                      for r in rows}
    return cache[result.id]


def difference(a: TaskResult, b: TaskResult, cache: dict) -> str | None:
    """What keeps two results of one task from being paired question by question; None when nothing does."""
    if a.task_type != b.task_type:
        return f"a {a.task_type} result against a {b.task_type} one"
    if a.prompt_sha256 and a.prompt_sha256 == b.prompt_sha256:
        return None  # one hash over every prompt in order: same questions, same prompts
    pa, pb = _questions(a, cache), _questions(b, cache)
    if pa is None or pb is None:
        return "different prompts (task prompt hashes differ and a per-sample file is missing)"
    if pa == pb:
        return None
    union = pa.keys() | pb.keys()
    differ = sum(1 for k in union if pa.get(k) != pb.get(k))
    if pa.keys() != pb.keys():
        return (f"{len(pa.keys() & pb.keys())} questions in common of the base's {len(pa)} and the candidate's {len(pb)}, "
                f"{differ} of {len(union)} prompts differ")
    return f"the prompts of {differ} of {len(union)} questions differ (few-shot, prompt style or data)"


def _model_runs(ref: str, store: str | None) -> list[Run]:
    """The runs a reference names, newest first: a run id is that run; a model its runs (newest weights)."""
    runs = [r for r in list_runs(store) if r.kind in ("evaluation", "profile")]
    if ref.isdigit():
        chosen = [r for r in runs if r.id == int(ref)]
        if not chosen:
            raise EvalkitError(f"no evaluation run {ref} in the store; list them with `evalkit runs`")
        return chosen
    chosen = [r for r in runs if matches_model(r, ref)]
    if not chosen:
        raise EvalkitError(f"no evaluation run of model {ref!r} in the store; list them with `evalkit runs` "
                           "(use a model name as given to --model, its label, or a run id)")
    newest = max(chosen, key=lambda r: r.id).model_key  # same name, different weights: the newest weights
    return sorted((r for r in chosen if r.model_key == newest), key=lambda r: r.id, reverse=True)


def _by_task(runs: list[Run], tasks: list[str] | None) -> dict[str, list[tuple[TaskResult, Run]]]:
    out: dict[str, list[tuple[TaskResult, Run]]] = {}
    for run in runs:  # newest first
        if run.kind != "evaluation":
            continue
        for result in run.tasks:
            if tasks is None or result.task in tasks:
                out.setdefault(result.task, []).append((result, run))
    return out


def _side(runs: list[Run], picked: dict[str, tuple[TaskResult, Run]]) -> Side:
    profiles = [r for r in runs if r.kind == "profile"]
    latest = runs[0]
    return Side(latest.model_label, latest.model_key, {t: p[0] for t, p in picked.items()},
                {t: p[1] for t, p in picked.items()}, profiles[0] if profiles else None)


def choose(base_ref: str, candidate_ref: str, store: str | None = None, tasks: list[str] | None = None,
           allow_mismatch: bool = False) -> Choice:
    base_runs, candidate_runs = _model_runs(base_ref, store), _model_runs(candidate_ref, store)
    base_tasks, candidate_tasks = _by_task(base_runs, tasks), _by_task(candidate_runs, tasks)
    shared = [t for t in base_tasks if t in candidate_tasks]
    if tasks:
        missing = [t for t in tasks if t not in shared]
        if missing:
            raise EvalkitError(f"task(s) {', '.join(missing)} not stored for both {base_ref!r} and {candidate_ref!r}; "
                               "run them with `evalkit run` first")
    if not shared:
        raise EvalkitError(f"{base_ref!r} and {candidate_ref!r} have no task in common in the store; "
                           "evaluate both on the same tasks first")
    cache: dict = {}
    picked_a, picked_b, notes, mismatches = {}, {}, [], []
    for task in shared:
        (newest_a, run_a), (newest_b, run_b) = base_tasks[task][0], candidate_tasks[task][0]
        why = difference(newest_a, newest_b, cache)
        if why is None or allow_mismatch:
            picked_a[task], picked_b[task] = (newest_a, run_a), (newest_b, run_b)
            if why is not None:
                mismatches.append(f"{task}: base {describe_run(run_a)} and candidate {describe_run(run_b)} are not "
                                  f"comparable: {why}; compared anyway (--allow-mismatch) on the questions both answered")
            continue
        pair = next(((x, y) for x in base_tasks[task] for y in candidate_tasks[task]
                     if difference(x[0], y[0], cache) is None), None)
        if pair is None:
            raise EvalkitError(f"{task}: no candidate run is comparable with a base run (newest: base {describe_run(run_a)}, "
                               f"candidate {describe_run(run_b)}: {why}); {PICK_HINT}")
        picked_a[task], picked_b[task] = pair
        skipped = [f"base {describe_run(run_a)}"] if pair[0][1] is not run_a else []
        skipped += [f"candidate {describe_run(run_b)}"] if pair[1][1] is not run_b else []
        notes.append(f"{task}: compared base run #{pair[0][1].id} with candidate run #{pair[1][1].id}, the newest pair on the "
                     f"same questions and prompts; the newer {' and '.join(skipped)} is not comparable ({why}).")
    return Choice(_side(base_runs, picked_a), _side(candidate_runs, picked_b), notes, mismatches)
