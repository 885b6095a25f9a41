"""``evalkit run``: tasks -> data -> model -> scores -> results files and a table."""

from __future__ import annotations

import random
import sys
import time
from datetime import datetime, timezone

from tabulate import tabulate

from evalkit import preflight
from evalkit.evaluators.base import EVALUATORS, RunConfig
from evalkit.models.loader import LoadedModel, load_model
from evalkit.profile import Profiler
from evalkit.profile.tokens import add_task_tokens
from evalkit.results import RunOutput, environment
from evalkit.tasks.registry import resolve_tasks


def _load_evaluators() -> None:
    import evalkit.evaluators.multiple_choice  # noqa: F401
    import evalkit.evaluators.perplexity  # noqa: F401

    try:  # generation tasks (issue 3) register themselves when present
        import evalkit.evaluators.generation  # noqa: F401
    except ImportError:
        pass


def run_evaluation(model: str, tasks: str, config: RunConfig, output_dir: str = "results", *,
                   device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
                   lm: LoadedModel | None = None, argv: list[str] | None = None,
                   store: str | None = None, record: bool = True) -> dict:
    """Evaluate; write the results files; record the run into the results store unless ``record=False``."""
    _load_evaluators()
    selections = resolve_tasks(tasks)
    preflight.check_unique_tasks(selections)
    preflight.check_device(device)
    if record:
        store = preflight.check_store(store)
    # Every input is read and checked before the (slow) model load.
    prepared = []
    for selection in selections:
        evaluator = EVALUATORS[selection.spec.type]
        prepared.append((selection, evaluator, evaluator.prepare(selection, config)))
    output = RunOutput(output_dir, model)
    output.check_writable()

    random.seed(config.seed)
    import torch

    torch.manual_seed(config.seed)
    started = time.time()
    task_results, task_throughput = {}, {}
    with Profiler() as prof:
        with prof.phase("model_load"):
            if lm is None:
                lm = load_model(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        load_seconds = time.time() - started
        for selection, evaluator, ready in prepared:
            name = selection.spec.name
            task_started = time.perf_counter()
            with prof.phase(f"evaluate:{name}"):
                task_results[name] = evaluator.run(ready, lm, config, output)
            samples = task_results[name].get("samples_file")
            task_throughput[name] = add_task_tokens(prof, task_results[name], samples and output.directory / samples,
                                                    time.perf_counter() - task_started)

    results = {
        "evalkit_version": environment()["evalkit"],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": argv if argv is not None else sys.argv,
        "model": {"name": model, **lm.identity, "dtype": lm.dtype, "device": lm.device,
                  "context_length": lm.context_length},
        "config": config.record(),
        "environment": environment(),
        "timing": {"model_load_s": round(load_seconds, 3), "total_s": round(time.time() - started, 3)},
        "tasks": task_results,
        "profile": {**prof.result(), "tasks": task_throughput},
    }
    results["results_file"] = str(output.write_results(results))
    if record:
        from evalkit.store import record_results_safely

        results["store"] = record_results_safely(results, results["results_file"], store)
    return results


def results_table(results: dict) -> str:
    rows = []
    for name, result in results["tasks"].items():
        rows += EVALUATORS[result["type"]].table(name, result)
    headers = ["task", "group", "n", "score", "± stderr"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
