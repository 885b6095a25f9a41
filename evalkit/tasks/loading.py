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

COMMON_KEYS = {"task", "type", "language", "citation", "description"}
# The keys each kind reads, top level and nested: a misspelt key (``max_new_token``) is refused, never ignored.
KNOWN_KEYS: dict[str, dict[str, set[str]]] = {
    "multiple_choice": {
        "": COMMON_KEYS | {"data", "splits", "eval_split", "fewshot_split", "categories", "subjects", "prompt_styles",
                           "labels", "scoring", "target_delimiter"},
        "data": {"dir", "files", "header", "index_column", "columns", "hub", "unlabeled_splits"},
        "data.hub": {"path", "name", "splits"},
        "subjects.*": {"name", "categories"},
    },
    "generation": {
        "": COMMON_KEYS | {"data", "instruction", "max_new_tokens", "stop", "sacrebleu_tokenize", "prompt",
                           "chat_template", "fewshot", "scoring"},
        "data": {"path", "format", "input", "reference", "slice", "separator", "hub"},
        "fewshot": {"path", "format", "input", "target", "num_fewshot", "strip", "separator", "target_delimiter"},
        "scoring": {"metric", "extract", "fallback", "reference_extract", "ignore_regexes", "normalise", "match"},
        "scoring.extract.*": {"regex", "select", "group"},
        "scoring.reference_extract.*": {"regex", "select", "group"},
    },
    "perplexity": {
        "": COMMON_KEYS | {"documents", "window", "stride"},
        "documents.*": {"file", "format", "field", "select", "max_chars"},
    },
}


def check_keys(raw: dict, kind: str, path: Path) -> None:
    for where, known in KNOWN_KEYS[kind].items():
        for label, block in _blocks(raw, where):
            unknown = sorted(str(key) for key in block if key not in known) if isinstance(block, dict) else []
            if unknown:
                place = f"{label}: " if label else ""
                raise EvalkitError(f"{path}: {place}unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))} "
                                   "(see docs/new_task_guide.md)")


def _blocks(raw: dict, where: str):
    """(label, mapping) pairs at a dotted place: ``data.hub``, or ``subjects.*`` for every entry."""
    found = [("", raw)]
    for part in where.split(".") if where else []:
        nested = []
        for label, block in found:
            if not isinstance(block, (dict, list)):
                continue
            items = (block.items() if isinstance(block, dict) else enumerate(block)) if part == "*" else \
                [(part, block.get(part))] if isinstance(block, dict) else []
            nested += [(f"{label}.{key}" if label else str(key), value) for key, value in items]
        found = nested
    return found


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
    check_keys(raw, kind, path)
    try:
        return TASK_TYPES[kind](raw, path)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        # a shape the per-type checks do not name yet: still one line naming the file, never a traceback
        raise EvalkitError(f"{path}: a value has the wrong shape ({type(exc).__name__}: {exc}); "
                           "see docs/new_task_guide.md") from None
