"""Write runs into the store: evaluation/profile results files, training manifests, whole directories."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from sqlalchemy import select

from evalkit.cache import sha256_file
from evalkit.errors import EvalkitError
from evalkit.report.samples import verify_summary
from evalkit.store.engine import open_store
from evalkit.store.identity import model_key, model_label
from evalkit.store.schema import Run, Score, TaskResult
from evalkit.store.validate import check_manifest, check_profile, check_results

GENERATION_METRICS = ("rouge-l", "bleu-4", "rouge-1", "rouge-2")


def _task_scores(result: dict) -> tuple[str, float | None, int | None, list[Score]]:
    """(headline metric, its value, n, every score row) for one task's results block."""
    kind = result.get("type")
    scores: list[Score] = []
    if kind == "multiple_choice":
        micro, macro = result["micro"], result["macro"]
        scores.append(Score(level="overall", group="micro", metric="acc", value=micro["acc"], stderr=micro.get("acc_stderr"), n=micro["n"]))
        scores.append(Score(level="overall", group="macro", metric="acc", value=macro["acc"], stderr=macro.get("acc_stderr"), n=macro.get("groups")))
        for level, blocks in (("subject", result.get("subjects", {})), ("category", result.get("categories", {}))):
            for group, block in blocks.items():
                scores.append(Score(level=level, group=group, metric="acc", value=block["acc"], stderr=block.get("acc_stderr"), n=block["n"]))
        return "acc", micro["acc"], micro["n"], scores
    if kind == "perplexity":
        for metric in ("perplexity", "perplexity_llamafactory"):
            scores.append(Score(level="overall", group="all", metric=metric, value=result.get(metric), n=result.get("predicted_tokens")))
        return "perplexity", result.get("perplexity"), result.get("documents"), scores
    n = result.get("n") or result.get("num_samples")
    if kind == "generation":
        if isinstance(result.get("exact_match"), (int, float)) and not isinstance(result["exact_match"], bool):
            scores.append(Score(level="overall", group="all", metric="exact_match", value=float(result["exact_match"]),
                                stderr=result.get("exact_match_stderr"), n=n))
            return "exact_match", result["exact_match"], n, scores
        for metric in (*GENERATION_METRICS, "sacrebleu", "chrf", "chrf++"):
            value = result.get(metric)
            if isinstance(value, dict):  # a corpus score may come with its signature
                value = value.get("score")
            if isinstance(value, (int, float)):
                scores.append(Score(level="overall", group="all", metric=metric, value=float(value),
                                    stderr=result.get(f"{metric}_stderr"), n=n))
        headline = next((m for m in GENERATION_METRICS if isinstance(result.get(m), (int, float))), "rouge-l")
        return headline, result.get(headline), n, scores
    numeric = {k: v for k, v in result.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.endswith("_stderr") and k not in ("n", "num_samples")}
    for metric, value in numeric.items():
        scores.append(Score(level="overall", group="all", metric=metric, value=float(value), stderr=result.get(f"{metric}_stderr"), n=n))
    headline = next((m for m in GENERATION_METRICS if m in numeric), next(iter(numeric), "score"))
    return headline, numeric.get(headline), n, scores


def _run_from_results(results: dict, results_path: Path, source_sha256: str) -> Run:
    model = results.get("model") or {}
    identity = {k: v for k, v in model.items() if k not in ("name", "dtype", "device", "context_length")}
    run = Run(source_sha256=source_sha256, kind=results.get("kind", "evaluation"),
              created_at=results.get("created_at", ""), model_name=str(model.get("name", "")),
              model_label=model_label(str(model.get("name", "")), identity), model_key=model_key(identity),
              base_model_key=model_key(identity["base"]) if identity.get("base") else None,
              model_identity=model, evalkit_version=str(results.get("evalkit_version", "")),
              results_file=str(results_path.resolve()), config=results.get("config") or {},
              profile=results.get("profile") or {}, command=results.get("command") or [])
    for task, block in (results.get("tasks") or {}).items():
        metric, score, n, scores = _task_scores(block)
        samples = _samples_name(task, block.get("samples_file"))
        run.tasks.append(TaskResult(
            task=task, task_type=str(block.get("type")), spec_sha256=block.get("spec_sha256"),
            prompt_sha256=block.get("prompt_sha256") or block.get("inputs_sha256"),
            evalkit_version=run.evalkit_version, metric=metric, score=score, n=n,
            samples_file=str((results_path.parent / samples).resolve()) if samples else None,
            result=block, scores=scores))
        try:
            verify_summary(task, run.tasks[-1])  # a summary its samples contradict never reaches the store
        except EvalkitError as exc:
            raise ValueError(str(exc)) from None
    return run


def _samples_name(task: str, name) -> str | None:
    """A results file names its samples file beside itself: a bare file name, never a path elsewhere."""
    if name is None:
        return None
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
        raise ValueError(f"tasks.{task}.samples_file {name!r} is refused: it must be a file name in the results "
                         "file's own directory (as `evalkit run` writes it), not a path")
    return name


def _insert(run: Run, store: str | None) -> tuple[int, bool]:
    """(run id, whether it is new): a file already in the store keeps its run."""
    factory, _ = open_store(store)
    with factory.begin() as session:  # one transaction: a run is stored whole or not at all
        existing = session.scalar(select(Run.id).where(Run.source_sha256 == run.source_sha256))
        if existing is not None:
            return existing, False
        session.add(run)
        session.flush()
        return run.id, True


def record_results(results: dict, results_path: str | Path, store: str | None = None) -> int:
    """Record an evaluation or profile results file; recording the same file twice is a no-op."""
    path = Path(results_path)
    return _insert(_run_from_results(results, path, sha256_file(path)), store)[0]


def record_results_safely(results: dict, results_path: str | Path, store: str | None = None) -> dict:
    """``record_results`` for the end of ``evalkit run``: the results file is already safe on disk,
    so a store problem is reported (with how to import later) rather than failing the run."""
    from evalkit.store.engine import normalise_url

    try:
        url = normalise_url(store)
        return {"url": url, "run_id": record_results(results, results_path, url)}
    except Exception as exc:  # noqa: BLE001 - any database error must not lose the finished run
        print(f"evalkit: warning: could not record the run in the results store ({type(exc).__name__}: {exc}); "
              f"load it later with: evalkit import {Path(results_path).parent}", file=sys.stderr)
        return {"url": store, "run_id": None, "error": str(exc)}


def record_training(checkpoint_dir: str | Path, manifest: dict, profile: dict | None = None,
                    store: str | None = None) -> int:
    """Record a finished training run (``train_manifest.json`` + profiler figures) for its checkpoint."""
    return _insert(_run_from_training(checkpoint_dir, manifest, profile), store)[0]


def _run_from_training(checkpoint_dir: str | Path, manifest: dict, profile: dict | None) -> Run:
    from evalkit.models.loader import weights_hash

    directory = Path(checkpoint_dir)
    manifest_path = directory / "train_manifest.json"
    base = manifest.get("base_model") or manifest.get("base") or {}
    base_identity = base.get("identity", base) if isinstance(base, dict) else {"source": str(base)}
    if (directory / "adapter_config.json").is_file():
        identity = {"kind": "peft_adapter", "source": str(directory.resolve()), "adapter_sha256": weights_hash(directory),
                    "peft_type": json.loads((directory / "adapter_config.json").read_text()).get("peft_type"),
                    "base": base_identity}
    else:
        identity = {"kind": "local", "source": str(directory.resolve()), "weights_sha256": weights_hash(directory)}
    text = json.dumps(manifest, sort_keys=True, default=str)
    source = sha256_file(manifest_path) if manifest_path.is_file() else hashlib.sha256(text.encode()).hexdigest()
    created = manifest.get("finished_at") or manifest.get("created_at") or _modified_at(manifest_path)
    run = Run(source_sha256=source, kind="training", created_at=str(created),
              model_name=str(directory), model_label=model_label(str(directory), identity), model_key=model_key(identity),
              base_model_key=model_key(base_identity) if base_identity else None, model_identity=identity,
              evalkit_version=str(manifest.get("evalkit_version") or (manifest.get("versions") or {}).get("evalkit", "")),
              results_file=str(manifest_path.resolve()) if manifest_path.is_file() else None,
              config=manifest, profile=profile or manifest.get("profile") or {}, command=manifest.get("command") or [])
    loss = manifest.get("final_loss")
    run.tasks.append(TaskResult(task="training", task_type="training", spec_sha256=manifest.get("data_sha256"),
                                prompt_sha256=None, evalkit_version=run.evalkit_version, metric="final_loss",
                                score=float(loss) if isinstance(loss, (int, float)) else None,
                                n=manifest.get("steps") or manifest.get("global_step"), samples_file=None, result=manifest, scores=[]))
    return run


def _modified_at(path: Path) -> str:
    """A manifest without a timestamp: its file's modification time (ISO-8601 UTC)."""
    from datetime import datetime, timezone

    if not path.is_file():
        return ""
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def import_directory(directory: str | Path, store: str | None = None) -> tuple[list[int], list[int], list[str]]:
    """Record every results_*.json / profile_*.json / train_manifest.json under ``directory``.

    Returns (new run ids, ids of files already in the store, "path (why)" of each skipped file).
    Every file is checked against its schema (evalkit/store/validate.py) before anything is
    written, so a bad file is skipped with its reason and never breaks the commands reading the store.
    """
    root = Path(directory)
    if not root.is_dir():
        raise EvalkitError(f"{root} is not a directory; pass the folder holding results_*.json files")
    new, known, skipped = [], [], []
    files = sorted([*root.rglob("results_*.json"), *root.rglob("profile_*.json"), *root.rglob("train_manifest.json")])
    # intermediate checkpoint-N/ copies of a finished run's manifest are not runs of their own
    files = [f for f in files if not (f.name == "train_manifest.json" and f.parent.name.startswith("checkpoint-")
                                      and (f.parent.parent / "train_manifest.json").is_file())]
    for path in files:
        try:
            run = _run_from_file(path)
        except ValueError as exc:
            skipped.append(f"{path} ({exc})")
            continue
        run_id, created = _insert(run, store)
        (new if created else known).append(run_id)
    return new, known, skipped


def read_run(path: str | Path) -> Run:
    """The Run a results file describes, checked and not stored (``evalkit gate`` compares files as they are)."""
    path = Path(path)
    try:
        return _run_from_file(path)
    except ValueError as exc:
        raise EvalkitError(f"{path}: {exc}; pass an evalkit results_*.json file") from None


MAX_RESULTS_BYTES = 64 * 1024 * 1024  # evalkit's results files are kilobytes; samples live in their own files


def _read_json(path: Path):
    try:
        if path.stat().st_size > MAX_RESULTS_BYTES:
            raise ValueError(f"larger than {MAX_RESULTS_BYTES // 2**20} MB; not an evalkit results file")
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:  # json's C parser recurses per level: a 100,000-deep file lands here
        raise ValueError("nested too deeply to be an evalkit file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"not readable JSON: {exc}") from None


def _run_from_file(path: Path) -> Run:
    """The Run a file describes; ValueError says why it cannot be imported."""
    data = _read_json(path)
    if path.name == "train_manifest.json":
        check_manifest(data)
        profile_path = path.parent / "train_profile.json"  # written by `evalkit train` beside the manifest
        profile = None
        if profile_path.is_file():
            try:
                profile = _read_json(profile_path)
                check_profile(profile)
            except ValueError as exc:
                raise ValueError(f"its {profile_path.name}: {exc}") from None
        return _run_from_training(path.parent, data, profile)
    if not (isinstance(data, dict) and "tasks" in data and "model" in data):
        raise ValueError("no 'model' and 'tasks': not an evalkit results file")
    check_results(data)
    return _run_from_results(data, path, sha256_file(path))
