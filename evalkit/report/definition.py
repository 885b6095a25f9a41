"""Leaderboard definitions (``leaderboards/*.yaml``, shipped in ``evalkit/resources/``): which task metrics are columns,
which averages, which profiler figures, which models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evalkit.errors import EvalkitError
from evalkit.report.figures import PROFILE_LABELS
from evalkit.resources import builtin_file, resource_dir
from evalkit.yaml_files import read_yaml

# metric -> multiplier for display (accuracy is stored as a fraction, shown in %)
DISPLAY_SCALE = {"acc": 100.0, "exact_match": 100.0}


@dataclass(frozen=True)
class Column:
    key: str  # unique id, also the HTML column id
    label: str
    task: str
    metric: str
    scale: float = 1.0


@dataclass(frozen=True)
class Average:
    label: str
    columns: tuple[str, ...]  # Column.key values


@dataclass(frozen=True)
class Leaderboard:
    path: Path
    title: str
    columns: tuple[Column, ...]
    averages: tuple[Average, ...]
    profile: tuple[str, ...]
    models: tuple[str, ...] = field(default=())
    hide_empty_columns: bool = True


Name = Field(min_length=1, max_length=200)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class ColumnEntry(_Strict):
    task: str = Name
    metric: str = Field("acc", min_length=1, max_length=64)
    label: str | None = Field(None, max_length=200)
    key: str | None = Field(None, max_length=200)
    scale: float | None = Field(None, gt=0)


class AverageEntry(_Strict):
    label: str = Name
    columns: list[str] | Literal["all"] = "all"


class DefinitionFile(_Strict):
    """The schema of a leaderboard definition: a misspelt or mistyped key is refused, never ignored."""
    title: str = Field("evalkit leaderboard", max_length=200)
    columns: list[ColumnEntry] = Field(min_length=1, max_length=200)
    averages: list[AverageEntry] = Field(default_factory=list, max_length=100)
    profile: list[str] = Field(default_factory=list, max_length=50)
    models: list[str] = Field(default_factory=list, max_length=10_000)
    hide_empty_columns: bool = True


def leaderboards_dir() -> Path:
    return resource_dir("leaderboards")


def load_definition(path: str | Path | None) -> Leaderboard:
    """``path``: a YAML file; else a built-in definition (``leaderboards/default.yaml``, ``default``); None: the default."""
    path = Path(path) if path else leaderboards_dir() / "default.yaml"
    if not path.is_file():
        path = builtin_file(path, "leaderboards") or path
    if not path.is_file():
        raise EvalkitError(f"leaderboard definition {path} does not exist; pass a YAML file such as leaderboards/default.yaml")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise EvalkitError(f"{path}: a leaderboard definition is a mapping with title, columns, averages, profile "
                           "(see leaderboards/default.yaml)")
    try:
        definition = DefinitionFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "the file"
        raise EvalkitError(f"{path}: {where}: {first['msg']}; see leaderboards/default.yaml for the fields") from None
    columns = [Column(entry.key or f"{entry.task}:{entry.metric}", entry.label or f"{entry.task} {entry.metric}",
                      entry.task, entry.metric, entry.scale or DISPLAY_SCALE.get(entry.metric, 1.0))
               for entry in definition.columns]
    if len({c.key for c in columns}) != len(columns):
        raise EvalkitError(f"{path}: two columns have the same task and metric; give one a distinct 'key'")
    by_label = {c.label: c.key for c in columns} | {c.key: c.key for c in columns}
    averages = []
    for i, entry in enumerate(definition.averages):
        if entry.columns == "all":
            keys = tuple(c.key for c in columns)
        else:
            unknown = [n for n in entry.columns if n not in by_label]
            if unknown:
                raise EvalkitError(f"{path}: averages[{i}] names unknown column(s) {', '.join(map(str, unknown))}; "
                                   f"use labels or keys from 'columns'")
            keys = tuple(by_label[n] for n in entry.columns)
        metrics = sorted({c.metric for c in columns if c.key in keys})
        if len(metrics) > 1:  # a mean of accuracy and ROUGE (or of BLEU and ROUGE) has no meaning
            raise EvalkitError(f"{path}: averages[{i}] ({entry.label}) mixes metrics {', '.join(metrics)}; "
                               "average like metrics only: one average per metric (e.g. acc, rouge-l)")
        averages.append(Average(entry.label, keys))
    profile = tuple(definition.profile)
    unknown = [p for p in profile if p not in PROFILE_LABELS]
    if unknown:
        raise EvalkitError(f"{path}: unknown profile figure(s) {', '.join(unknown)}; choose from {', '.join(PROFILE_LABELS)}")
    return Leaderboard(path, definition.title, tuple(columns), tuple(averages), profile, tuple(definition.models),
                       definition.hide_empty_columns)
