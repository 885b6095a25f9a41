"""Nightly suite files (``suites/*.yaml``, shipped in ``evalkit/resources/suites``): models, tasks with their
settings, gate thresholds, baseline policy, where results and the leaderboard go. Checked with pydantic: a typo
is one line, exit 2."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evalkit.errors import EvalkitError
from evalkit.resources import builtin_file
from evalkit.gate.thresholds import Thresholds
from evalkit.yaml_files import read_yaml


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskEntry(Strict):
    task: str  # as --tasks takes it: cmmlu, cmmlu:agronomy, path/to/spec.yaml
    limit: int | None = Field(None, ge=1)
    num_fewshot: int = Field(0, ge=0, le=5)
    batch_size: int | Literal["auto"] = 1
    max_new_tokens: int | None = Field(None, ge=1)
    truncation: Literal["error", "left"] = "error"


class Pinned(Strict):
    pinned: dict[str, list[str]]  # model (as listed in models) -> results files committed to the repo


class LeaderboardOut(Strict):
    definition: str | None = None  # default leaderboards/default.yaml
    output: str = "nightly/site"


class Suite(Strict):
    name: str
    models: list[str] = Field(min_length=1)  # aliases, model dirs, or globs of checkpoint dirs
    backend: str = "hf"  # as `evalkit run --backend` takes it (fake: CI of the job itself, no model)
    tasks: list[TaskEntry] = Field(min_length=1)
    gate: Thresholds = Thresholds()
    baseline: Literal["last_accepted"] | Pinned = "last_accepted"
    output: str = "nightly"  # per night: results, verdict.json, summary.md, reports/
    leaderboard: LeaderboardOut = LeaderboardOut()
    path: Path | None = None

    def expanded_models(self) -> list[str]:
        """Globs (``checkpoints/*/``) replaced by the directories they match, sorted; other entries as given."""
        models = []
        for entry in self.models:
            if glob.has_magic(entry):
                matches = sorted(str(Path(p)) for p in glob.glob(entry) if Path(p).is_dir())
                if not matches:
                    raise EvalkitError(f"{self.path}: models glob {entry!r} matches no directory; fix the pattern")
                models += matches
            else:
                models.append(entry)
        return models


def load_suite(path: str | Path) -> Suite:
    """``path``: a suite file; failing that a built-in one (``suites/smoke.yaml``, ``smoke``) from the package."""
    path = Path(path)
    if not path.is_file():
        path = builtin_file(path, "suites") or path
    if not path.is_file():
        raise EvalkitError(f"suite file {path} does not exist; pass a YAML file such as suites/smoke.yaml")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise EvalkitError(f"{path}: a suite is a mapping with name, models, tasks (see suites/smoke.yaml)")
    raw.setdefault("name", path.stem)
    try:
        suite = Suite(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise EvalkitError(f"{path}: {where}: {first['msg']}; see suites/smoke.yaml for the fields") from None
    from evalkit.backends import BACKENDS

    if suite.backend not in BACKENDS:
        raise EvalkitError(f"{path}: backend: unknown backend {suite.backend!r}; use one of {', '.join(BACKENDS)}")
    suite.path = path
    return suite
