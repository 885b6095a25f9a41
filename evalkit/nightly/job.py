"""One night of a suite: every model on every task, into the store, gated, leaderboard rebuilt, accepted on a pass.

A rerun of a killed night does not start over: finished tasks are listed in ``<output>/<night>/manifest.json``
and skipped; a task killed half-way resumes from the request cache (``run_evaluation`` reads it by itself).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.gate import gate, resolve_side
from evalkit.gate import output as gate_output
from evalkit.nightly.suite import Suite
from evalkit.results import slug


def tonight() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


class Manifest:
    """model -> task -> {results_file, run_id}: the finished tasks of one night, written after each."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def done(self, model: str, task: str) -> dict | None:
        entry = self.data.get(model, {}).get(task)
        return entry if entry and Path(entry["results_file"]).is_file() and entry.get("run_id") else None

    def add(self, model: str, task: str, entry: dict) -> None:
        self.data.setdefault(model, {})[task] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(self.data, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, self.path)  # a kill mid-write leaves the previous manifest whole


def _evaluate(suite: Suite, model: str, night_dir: Path, manifest: Manifest, store: str) -> list[int]:
    from evalkit.evaluate import run_evaluation
    from evalkit.evaluators.base import RunConfig

    run_ids = []
    for entry in suite.tasks:
        finished = manifest.done(model, entry.task)
        if finished:
            print(f"nightly: {model} {entry.task}: already done tonight (run {finished['run_id']}), skipped")
            run_ids.append(finished["run_id"])
            continue
        started = time.perf_counter()
        config = RunConfig(num_fewshot=entry.num_fewshot, limit=entry.limit, batch_size=entry.batch_size,
                           max_new_tokens=entry.max_new_tokens, truncation=entry.truncation, progress=False)
        results = run_evaluation(model, entry.task, config, str(night_dir / "results"), store=store, backend=suite.backend,
                                 argv=["evalkit", "nightly", str(suite.path), "--task", entry.task, "--model", model])
        run_id = (results.get("store") or {}).get("run_id")
        if run_id is None:
            raise EvalkitError(f"nightly: {model} {entry.task} could not be recorded in the store {store}; "
                               "fix the store (--store) and rerun: finished tasks are kept")
        manifest.add(model, entry.task, {"results_file": results["results_file"], "run_id": run_id})
        run_ids.append(run_id)
        print(f"nightly: {model} {entry.task}: run {run_id} in {time.perf_counter() - started:.1f} s")
    return run_ids


def _baseline_ref(suite: Suite, model: str, tonight_ids: list[int], store: str) -> str | None:
    """A gate reference for the baseline, or None on the first night (nothing accepted yet)."""
    if not isinstance(suite.baseline, str):
        files = suite.baseline.pinned.get(model)
        if not files:
            raise EvalkitError(f"{suite.path}: baseline.pinned has no results files for model {model!r}; add them")
        return ",".join(files)
    from evalkit.store.tags import accepted_runs

    earlier = [r.id for r in accepted_runs(model, suite.name, store) if r.id not in tonight_ids]
    return ",".join(str(i) for i in earlier) or None


def _preflight(suite: Suite, models: list[str]) -> None:
    """Check the pinned baseline files and the leaderboard definition before anything is evaluated."""
    from evalkit.report.definition import load_definition
    from evalkit.store.record import read_run

    load_definition(suite.leaderboard.definition)
    if isinstance(suite.baseline, str):
        return
    for model in models:
        files = suite.baseline.pinned.get(model)
        if not files:
            raise EvalkitError(f"{suite.path}: baseline.pinned has no results files for model {model!r}; add them")
        for file in files:
            if not Path(file).is_file():
                raise EvalkitError(f"{suite.path}: baseline.pinned[{model!r}] file {file} does not exist; "
                                   "commit the results_*.json (and its samples) or fix the path")
            read_run(file)


def markdown_text(text) -> str:
    """``text`` safe inside Markdown (and the HTML GitHub renders it to): specials backslash-escaped."""
    import html
    import re

    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~>])", r"\\\1", html.escape(str(text), quote=False))


def _reports(verdict: dict, base, candidate, directory: Path, store: str) -> list[str]:
    """One base-vs-candidate HTML report per task (the report's sides are single runs)."""
    from evalkit.report import build_report

    written = []
    for task in verdict["tasks"]:
        a, b = base.results[task].run_id, candidate.results[task].run_id
        if a is None or b is None or a < 0:  # a pinned file is not in the store: the gate's table says it all
            continue
        try:
            path, _ = build_report(str(a), str(b), directory / f"{slug(task)}.html", store, [task], force=True,
                                   shared_plotly=directory.parent / "plotly.min.js")  # one copy for the night's pages
            written.append(str(path))
        except EvalkitError as exc:
            print(f"nightly: warning: no report for {task}: {exc}", file=sys.stderr)
    return written


def run_nightly(suite: Suite, *, night: str | None = None, output: str | None = None, store: str | None = None,
                leaderboard: str | None = None) -> dict:
    from evalkit.report import build_leaderboard
    from evalkit.store import normalise_url
    from evalkit.store.tags import mark_accepted, record_night

    night = night or tonight()
    store = normalise_url(store)
    root = Path(output or suite.output)
    night_dir = root / night
    manifest = Manifest(night_dir / "manifest.json")
    models = suite.expanded_models()
    _preflight(suite, models)  # hours of evaluation must not end in "baseline missing"
    started = time.perf_counter()
    verdicts, summaries, code = {}, [], 0
    for model in models:
        ids = _evaluate(suite, model, night_dir, manifest, store)
        candidate = resolve_side(",".join(str(i) for i in ids), store)
        base_ref = _baseline_ref(suite, model, ids, store)
        if base_ref is None:
            verdict = {"verdict": "first night", "exit_code": 0, "candidate": {"ref": candidate.ref, "runs": ids},
                       "baseline": None, "rows": [], "failing": [], "warnings": []}
            summaries.append(f"## {markdown_text(suite.name)} / {markdown_text(model)}: ✅ first night, "
                             "accepted as the baseline\n")
            print(f"nightly: {model}: no accepted baseline yet; tonight's runs become it")
        else:
            base = resolve_side(base_ref, store)
            verdict = gate(base, candidate, suite.gate)
            print(gate_output.table(verdict))
            summaries.append(gate_output.markdown(verdict, f"{markdown_text(suite.name)} / {markdown_text(model)}"))
            verdict["reports"] = _reports(verdict, base, candidate, night_dir / "reports" / slug(model), store)
        if verdict["exit_code"] == 0:
            mark_accepted(ids, suite.name, night, store)
        verdict["accepted"] = verdict["exit_code"] == 0
        verdicts[model] = verdict
        record_night(suite.name, night, model, verdict, store)
        code = max(code, verdict["exit_code"])
    site, _ = build_leaderboard(suite.leaderboard.definition, leaderboard or suite.leaderboard.output, store)
    summary = "\n".join(summaries) + f"\nLeaderboard: {markdown_text(site)}; {len(models)} model(s) x {len(suite.tasks)} task(s), " \
                                     f"{time.perf_counter() - started:.0f} s.\n"
    result = {"suite": suite.name, "night": night, "store": store, "exit_code": code,
              "verdict": "regression" if code else "pass", "models": verdicts, "leaderboard": str(site)}
    for directory in (night_dir, root):  # the root's copies are the latest night's, at a fixed path for CI
        gate_output.write(directory / "verdict.json", gate_output.to_json(result))
        gate_output.write(directory / "summary.md", summary)
    return result
