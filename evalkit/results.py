"""Results files: a JSON summary and a per-sample JSONL per task, never written over."""

from __future__ import annotations

import json
import platform
import re
import sys
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
            "processor": _cpu_model(), "libraries": versions}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "__", text).strip("_") or "model"


class RunOutput:
    """Paths of one run's files. Reserved up front so a clash fails before any model time is spent."""

    def __init__(self, output_dir: str | Path, model_name: str, stamp: str | None = None):
        self.stamp = stamp or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self.directory = Path(output_dir) / slug(model_name)
        self.results_path = self.directory / f"results_{self.stamp}.json"

    def check_writable(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EvalkitError(f"{self.directory}: cannot create the output directory ({exc.strerror}); choose another --output-dir") from None
        if self.results_path.exists():
            raise EvalkitError(f"{self.results_path} already exists; it is never overwritten, choose another --output-dir")

    def samples_path(self, task: str) -> Path:
        return self.directory / f"samples_{slug(task)}_{self.stamp}.jsonl"

    def write_samples(self, task: str, rows: list[dict]) -> Path:
        path = self.samples_path(task)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        _write_new(path, text)
        return path

    def write_predictions(self, task: str, split: str, predictions: dict) -> Path:
        """A leaderboard submission for a split without public answers (C-Eval test: {subject: {id: letter}})."""
        path = self.directory / f"predictions_{slug(task)}_{slug(split)}_{self.stamp}.json"
        _write_new(path, json.dumps(predictions, ensure_ascii=False, indent=1) + "\n")
        return path

    def write_results(self, results: dict) -> Path:
        _write_new(self.results_path, json.dumps(results, ensure_ascii=False, indent=2) + "\n")
        return self.results_path


def _write_new(path: Path, text: str) -> None:
    try:
        with open(path, "x", encoding="utf-8") as handle:  # "x": fail rather than overwrite
            handle.write(text)
    except FileExistsError:
        raise EvalkitError(f"{path} already exists; it is never overwritten, choose another --output-dir") from None
