"""Leaderboard definitions (``leaderboards/*.yaml``, shipped in ``evalkit/resources/``): which task metrics are columns,
which averages, which profiler figures, which models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.report.figures import PROFILE_LABELS
from evalkit.resources import builtin_file, resource_dir
from evalkit.yaml_files import read_yaml

# metric -> multiplier for display (accuracy is stored as a fraction, shown in %)
DISPLAY_SCALE = {"acc": 100.0}


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
    if not isinstance(raw, dict) or not raw.get("columns"):
        raise EvalkitError(f"{path}: needs a 'columns' list of {{task: ..., metric: ...}} entries")
    columns = []
    for i, entry in enumerate(raw["columns"]):
        if not isinstance(entry, dict) or "task" not in entry:
            raise EvalkitError(f"{path}: columns[{i}] needs a 'task' (and a 'metric', e.g. acc or rouge-l)")
        metric = str(entry.get("metric", "acc"))
        key = str(entry.get("key") or f"{entry['task']}:{metric}")
        columns.append(Column(key, str(entry.get("label") or f"{entry['task']} {metric}"), str(entry["task"]), metric,
                              float(entry.get("scale", DISPLAY_SCALE.get(metric, 1.0)))))
    if len({c.key for c in columns}) != len(columns):
        raise EvalkitError(f"{path}: two columns have the same task and metric; give one a distinct 'key'")
    by_label = {c.label: c.key for c in columns} | {c.key: c.key for c in columns}
    averages = []
    for i, entry in enumerate(raw.get("averages") or []):
        names = entry.get("columns", "all") if isinstance(entry, dict) else None
        if names is None or "label" not in entry:
            raise EvalkitError(f"{path}: averages[{i}] needs a 'label' and 'columns' (a list of column labels/keys, or all)")
        if names == "all":
            keys = tuple(c.key for c in columns)
        else:
            unknown = [n for n in names if n not in by_label]
            if unknown:
                raise EvalkitError(f"{path}: averages[{i}] names unknown column(s) {', '.join(map(str, unknown))}; "
                                   f"use labels or keys from 'columns'")
            keys = tuple(by_label[n] for n in names)
        metrics = sorted({c.metric for c in columns if c.key in keys})
        if len(metrics) > 1:  # a mean of accuracy and ROUGE (or of BLEU and ROUGE) has no meaning
            raise EvalkitError(f"{path}: averages[{i}] ({entry['label']}) mixes metrics {', '.join(metrics)}; "
                               "average like metrics only: one average per metric (e.g. acc, rouge-l)")
        averages.append(Average(str(entry["label"]), keys))
    profile = tuple(raw.get("profile") or ())
    unknown = [p for p in profile if p not in PROFILE_LABELS]
    if unknown:
        raise EvalkitError(f"{path}: unknown profile figure(s) {', '.join(unknown)}; choose from {', '.join(PROFILE_LABELS)}")
    return Leaderboard(path, str(raw.get("title") or "evalkit leaderboard"), tuple(columns), tuple(averages), profile,
                       tuple(str(m) for m in raw.get("models") or ()), bool(raw.get("hide_empty_columns", True)))
