"""One side of the gate: results files, run ids, or a query of the results store, as {task: TaskResult}.

A reference is a comma-separated list of any of:

* ``path/to/results_*.json``: a results file (its ``samples_*.jsonl`` next to it);
* ``17``: a run id in the store (``evalkit runs`` lists them);
* ``accepted:MODEL`` or ``accepted:MODEL@SUITE``: the latest accepted run per task of MODEL (for SUITE);
* ``latest:MODEL``: MODEL's latest stored result per task (as ``evalkit report`` picks them).

Later parts win for a task both hold, so a nightly side is simply its per-task runs in order (and a
baseline of several nights takes each task's newest accepted run, even where a checkpoint was retrained).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.report.figures import model_figures
from evalkit.store.schema import Run, TaskResult


@dataclass
class GateSide:
    ref: str
    label: str
    runs: list[Run] = field(default_factory=list)
    results: dict[str, TaskResult] = field(default_factory=dict)

    @property
    def run_ids(self) -> list[int]:
        return [r.id for r in self.runs if r.id is not None and r.id > 0]

    @property
    def source_run(self) -> Run | None:
        """The run whose profile this side shows: the last evaluation run given (later parts win)."""
        return next((r for r in reversed(self.runs) if r.kind == "evaluation"), None)

    def run_of(self, task: str) -> Run | None:
        result = self.results.get(task)
        return next((r for r in reversed(self.runs) if any(t is result for t in r.tasks)), None)

    def figures(self) -> dict:
        """Profiler figures of one run (never prefill from one run and decode from another)."""
        perplexity = next((r for r in self.results.values() if r.task_type == "perplexity"), None)
        source = self.source_run
        return model_figures([source] if source is not None else [], None, perplexity)


def _store_runs(part: str, store: str | None) -> list[Run]:
    from evalkit.store.query import list_runs, resolve_model
    from evalkit.store.tags import accepted_runs

    if part.isdigit():
        runs = [r for r in list_runs(store) if r.id == int(part)]
        if not runs or runs[0].kind != "evaluation":
            raise EvalkitError(f"no evaluation run {part} in the results store; list them with `evalkit runs`")
        return runs
    kind, _, rest = part.partition(":")
    if kind == "accepted":
        model, _, suite = rest.partition("@")
        runs = accepted_runs(model, suite or None, store)
        if not runs:
            raise EvalkitError(f"{part}: no accepted run of {model!r}{f' for suite {suite!r}' if suite else ''} in the "
                               "results store; a nightly run whose gate passes is accepted (or pin a results file)")
        return runs
    if kind == "latest":
        side = resolve_model(rest, store)
        return sorted({r.id: r for r in side.runs.values()}.values(), key=lambda r: r.id)
    raise EvalkitError(f"{part!r} is not a results file, run id, accepted:MODEL[@SUITE] or latest:MODEL")


def resolve_side(ref: str, store: str | None = None) -> GateSide:
    from evalkit.store.record import read_run

    parts = [p.strip() for p in ref.split(",") if p.strip()]
    if not parts:
        raise EvalkitError("an empty side: pass a results file, a run id, accepted:MODEL or latest:MODEL")
    runs: list[Run] = []
    for number, part in enumerate(parts, 1):
        if part.endswith(".json") or Path(part).is_file():
            if not Path(part).is_file():
                raise EvalkitError(f"{part}: no such results file; pass the results_*.json that `evalkit run` wrote")
            run = read_run(part)
            run.id = -number  # not stored: a stand-in id keeps the order (model_figures sorts by id)
            runs.append(run)
        else:
            runs.extend(_store_runs(part, store))
    results: dict[str, TaskResult] = {}
    for run in runs:  # in the order given: later parts replace earlier ones
        for result in run.tasks:
            results[result.task] = result
    return GateSide(ref, runs[-1].model_label, runs, results)
