"""``evalkit run``: tasks -> data -> model -> scores -> results files and a table."""

from __future__ import annotations

import random
import sys
import time
from datetime import datetime, timezone

from tabulate import tabulate

from evalkit.backends import BackendOptions, backend_class
from evalkit.backends.request_cache import RequestCache
from evalkit import distributed, preflight
from evalkit.errors import EvalkitError
from evalkit.evaluators.base import EVALUATORS, RunConfig
from evalkit.models.loader import LoadedModel
from evalkit.profile import Profiler
from evalkit.profile.tokens import add_task_tokens
from evalkit.results import RunOutput, environment
from evalkit.tasks.registry import TaskSelection, resolve_tasks


def _load_evaluators() -> None:
    import evalkit.evaluators.generation  # noqa: F401
    import evalkit.evaluators.multiple_choice  # noqa: F401
    import evalkit.evaluators.perplexity  # noqa: F401


def run_evaluation(model: str, tasks: str | list[TaskSelection], config: RunConfig, output_dir: str = "results", *,
                   device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
                   lm: LoadedModel | None = None, argv: list[str] | None = None,
                   store: str | None = None, record: bool = True, backend: str = "hf",
                   options: BackendOptions | None = None, threads: int | str | None = None) -> dict:
    """Evaluate; write the results files; record the run into the results store unless ``record=False``.

    ``tasks``: a ``--tasks`` argument, or the selections it already resolved to.
    ``threads``: ``--threads`` (N or auto), applied after the inputs are checked (auto samples the idle cores
    for a moment) and before the model loads; None keeps torch's setting.
    ``lm``: an already loaded model, evaluated with the hf backend (tests, the trainer's evaluation).
    """
    _load_evaluators()
    backend_type = backend_class("hf" if lm is not None else backend)
    options = options or backend_type.Options(device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    if not isinstance(options, backend_type.Options):
        raise TypeError(f"options for --backend {backend_type.name} must be {backend_type.Options.__name__}")
    distributed.init()  # under accelerate launch / torchrun: rank 0 writes and records, see evalkit/distributed.py
    output_dir, record = distributed.rank_output(output_dir, record)
    options.device = distributed.rank_device(options.device)
    selections = resolve_tasks(tasks) if isinstance(tasks, str) else tasks
    preflight.check_unique_tasks(selections)
    preflight.check_device(options.device)
    if record:
        store = preflight.check_store(store)
    # Every input is read and checked before the (slow) model load.
    prepared = []
    for selection in selections:
        evaluator = EVALUATORS[selection.spec.type]
        prepared.append((selection, evaluator, evaluator.prepare(selection, config)))
        if selection.spec.type not in backend_type.task_types:
            raise EvalkitError(f"task {selection.spec.name} ({selection.spec.type}) cannot run on --backend {backend}; "
                               f"it answers {', '.join(backend_type.task_types)} tasks: use --backend hf for this one")
    output = RunOutput(output_dir, model)
    output.check_writable()
    if threads is not None:
        from evalkit import threads as cpu_threads

        config.threads = cpu_threads.set_threads(threads)
        config.threads_seen = cpu_threads.last_sample if threads == "auto" else None

    random.seed(config.seed)
    import torch

    torch.manual_seed(config.seed)
    started = time.time()
    task_results, task_throughput = {}, {}
    with Profiler() as prof:
        cache = RequestCache.open if config.use_cache else None  # opened with the loaded model's namespace
        with prof.phase("model_load"):
            loaded = backend_type(lm, request_cache=cache) if lm is not None else \
                backend_type.load(model, options, request_cache=cache)
            engine = distributed.wrap(loaded)
        load_seconds = time.time() - started
        for selection, evaluator, ready in prepared:
            name = selection.spec.name
            task_started = time.perf_counter()
            before = engine.request_cache.counts() if engine.request_cache else None
            with prof.phase(f"evaluate:{name}"):
                task_results[name] = evaluator.run(ready, engine, config, output)
            if before is not None:  # how much of this task came back from the cache
                after = engine.request_cache.counts()
                task_results[name]["requests"] = {k: after[k] - before[k] for k in after}
            samples = task_results[name].get("samples_file")
            task_throughput[name] = add_task_tokens(prof, task_results[name], samples and output.directory / samples,
                                                    time.perf_counter() - task_started)

    results = {
        "evalkit_version": environment()["evalkit"],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": argv if argv is not None else sys.argv,
        "model": engine.model_record(model),
        "backend": engine.describe(),
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
    kinds = {result["type"] for result in results["tasks"].values()}
    # Multiple choice scores are accuracies in percent; generation and perplexity rows name their metric.
    score = "acc %" if kinds == {"multiple_choice"} else "score (MC: acc %)" if "multiple_choice" in kinds else "score"
    headers = ["task", "group", "n", score, "± stderr"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
