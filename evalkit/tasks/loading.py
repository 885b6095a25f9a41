"""Read a task spec file into the dataclass its ``type`` names. The one module that knows every kind, so
the kinds import only spec.py's base and nothing imports back (no cycle)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from evalkit.errors import EvalkitError
from evalkit.tasks.generation_spec import GenerationSpec
from evalkit.tasks.perplexity_spec import PerplexitySpec
from evalkit.tasks.spec import MultipleChoiceSpec, TaskSpec
from evalkit.yaml_files import read_yaml

TASK_TYPES: dict[str, Callable[[dict, Path], TaskSpec]] = {
    "multiple_choice": MultipleChoiceSpec.from_dict,
    "generation": GenerationSpec.from_dict,
    "perplexity": PerplexitySpec.from_dict,
}


def load_spec(path: Path) -> TaskSpec:
    raw = read_yaml(path, "fix the spec file")
    if not isinstance(raw, dict):
        raise EvalkitError(f"{path}: a task spec must be a YAML mapping")
    kind = raw.get("type")
    if kind not in TASK_TYPES:
        raise EvalkitError(f"{path}: unknown task type {kind!r}; use one of {', '.join(TASK_TYPES)}")
    return TASK_TYPES[kind](raw, path)
