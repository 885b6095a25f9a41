"""Results files: a JSON summary and a per-sample JSONL per task, never written over."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from evalkit import __version__
from evalkit.errors import EvalkitError

LIBRARIES = ("torch", "transformers", "peft", "tokenizers", "accelerate", "datasets", "gguf")


def environment() -> dict:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"evalkit": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "processor": cpu_model(), "libraries": versions}


def cpu_model() -> str:
    """The CPU's model name, with its family and model numbers: VMs often report only "AMD EPYC",
    and a Zen 4 and a Zen 5 host differ 2x in fp32 matmul rate."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model") and key not in fields:
                fields[key] = value.strip()
            if not line.strip() and fields:
                break  # the first processor's block is enough
    except OSError:
        pass
    name = fields.get("model name") or platform.processor()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "__", text).strip("_") or "model"


class RunOutput:
    """Paths of one run's files. Reserved up front so a clash fails before any model time is spent.

    The directory is created by the first write, so a run that fails before writing anything
    leaves no empty ``<output-dir>/<model>/`` behind. If writing fails anyway (the disk filled up,
    the filesystem went read-only), the files go to a fallback directory, named on stderr, rather
    than hours of computation being lost.
    """

    def __init__(self, output_dir: str | Path, model_name: str, stamp: str | None = None):
        self.stamp = stamp or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self.model_slug = slug(model_name)
        self.directory = Path(output_dir) / self.model_slug
        self.first_directory = self.directory  # where the files go unless writing there fails
        self.results_path = self.directory / f"results_{self.stamp}.json"

    def check_writable(self) -> None:
        """Write and remove a probe file (``mkdir`` succeeding says nothing about a read-only mount)."""
        if self.results_path.exists():
            raise EvalkitError(f"{self.results_path} already exists; it is never overwritten, choose another --output-dir")
        created = [d for d in (self.directory, *self.directory.parents) if not d.exists()]
        probe = self.directory / f".evalkit-probe-{os.getpid()}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise EvalkitError(f"{self.directory}: cannot write the output directory ({exc.strerror or exc}); "
                               "choose another --output-dir") from None
        finally:
            for directory in created:  # the first real write creates them again
                _remove_if_empty(directory)

    def samples_path(self, task: str) -> Path:
        return self.directory / f"samples_{slug(task)}_{self.stamp}.jsonl"

    def write_samples(self, task: str, rows: list[dict]) -> Path:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return self._write(lambda: self.samples_path(task), text)

    def write_predictions(self, task: str, split: str, predictions: dict) -> Path:
        """A leaderboard submission for a split without public answers (C-Eval test: {subject: {id: letter}})."""
        path = self.directory / f"predictions_{slug(task)}_{slug(split)}_{self.stamp}.json"
        _write_new(path, json.dumps(predictions, ensure_ascii=False, indent=1) + "\n")
        return path

    def write_results(self, results: dict) -> Path:
        record_portably(results)

        def text() -> str:
            # samples written before a fallback stay where they are: point at them by absolute path
            for block in (results.get("tasks") or {}).values():
                name = block.get("samples_file") if isinstance(block, dict) else None
                if name and not (self.directory / name).is_file() and (self.first_directory / name).is_file():
                    block["samples_file"] = str((self.first_directory / name).resolve())
            return json.dumps(results, ensure_ascii=False, indent=2) + "\n"

        return self._write(lambda: self.results_path, text)

    def _write(self, path_of, text) -> Path:
        """Write a new file; on an OS error, switch this run to a fallback directory and write it there."""
        path = path_of()
        try:
            _write_new(path, text if isinstance(text, str) else text())
            return path
        except OSError as exc:
            fallback = self._fallback_directory()
            if fallback is None:
                raise EvalkitError(f"{path}: cannot write ({exc.strerror or exc}) and no fallback directory is "
                                   "writable; free some space or fix the permissions") from None
            print(f"evalkit: warning: cannot write {path} ({exc.strerror or exc}); this run's files go to "
                  f"{fallback} instead", file=sys.stderr)
            name = self.results_path.name
            self.directory = fallback
            self.results_path = fallback / name
            path = path_of()
            _write_new(path, text if isinstance(text, str) else text())
            return path

    def _fallback_directory(self) -> Path | None:
        """``./evalkit-unsaved/<model>``, else the temporary directory: the first that takes a probe file."""
        for root in (Path.cwd() / "evalkit-unsaved", Path(tempfile.gettempdir()) / "evalkit-unsaved"):
            directory = root / self.model_slug
            if directory == self.directory:
                continue
            try:
                directory.mkdir(parents=True, exist_ok=True)
                probe = directory / f".evalkit-probe-{os.getpid()}"
                probe.write_bytes(b"")
                probe.unlink()
                return directory
            except OSError:
                continue
        return None


def record_portably(results: dict) -> None:
    """Name built-in task specs and embedded models the same on every machine: a task spec shipped with evalkit
    by its task name (``spec_sha256`` beside it pins the exact file; readers resolve the name with
    resolve_tasks from any checkout or install), never by the checkout's or virtualenv's absolute path; an
    embedded model passed as its cache directory by its alias."""
    for block in (results.get("tasks") or {}).values():
        if isinstance(block, dict) and isinstance(block.get("spec"), str):
            block["spec"] = builtin_spec_name(block["spec"]) or block["spec"]
    model = results.get("model")
    while isinstance(model, dict):
        if model.get("alias") and _inside_cache(model.get("name")):
            model["name"] = model["alias"]
        model = model.get("base")


def builtin_spec_name(spec: str) -> str | None:
    """``cmmlu`` for ``<package>/resources/tasks/cmmlu.yaml``; None for a user's own spec file."""
    from evalkit.resources import resource_dir
    from evalkit.tasks.registry import available_tasks

    path = Path(spec)
    if not path.is_absolute() or path.suffix not in (".yaml", ".yml"):
        return None
    try:
        resolved = path.resolve()
        found = available_tasks().get(path.stem)  # the name must lead back to this file (no user spec shadows it)
        same = resolved.parent == resource_dir("tasks").resolve() and found is not None and found.resolve() == resolved
    except (OSError, EvalkitError):
        return None
    return path.stem if same else None


def _inside_cache(name) -> bool:
    from evalkit.cache import cache_dir

    if not isinstance(name, str) or not name:
        return False
    try:
        return Path(name).expanduser().resolve().is_relative_to(cache_dir().resolve())
    except (OSError, ValueError, EvalkitError):
        return False


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:  # not empty, or already gone
        pass


def _write_new(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x", encoding="utf-8") as handle:  # "x": fail rather than overwrite
            handle.write(text)
    except FileExistsError:
        raise EvalkitError(f"{path} already exists; it is never overwritten, choose another --output-dir") from None
    except OSError:
        try:
            path.unlink(missing_ok=True)  # never leave a half-written file (e.g. disk full mid-write)
        except OSError:
            pass
        raise
