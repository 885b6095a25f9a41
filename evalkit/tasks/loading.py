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
    if not isinstance(kind, str) or kind not in TASK_TYPES:
        raise EvalkitError(f"{path}: unknown task type {kind!r}; use one of {', '.join(TASK_TYPES)}")
    if not isinstance(raw.get("task"), str) or not raw["task"]:
        raise EvalkitError(f"{path}: 'task' must be a non-empty string (the task's name); fix 'task'")
    try:
        return TASK_TYPES[kind](raw, path)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        # a shape the per-type checks do not name yet: still one line naming the file, never a traceback
        raise EvalkitError(f"{path}: a value has the wrong shape ({type(exc).__name__}: {exc}); "
                           "see docs/new_task_guide.md") from None
