"""Find task specs by name (``cmmlu``), by file (``my_task.yaml``) or with subjects (``cmmlu:agronomy``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.tasks.loading import load_spec
from evalkit.tasks.spec import TaskSpec


def tasks_dir() -> Path:
    """The top-level ``tasks/`` folder of the checkout; ``EVALKIT_TASKS_DIR`` points elsewhere."""
    if os.environ.get("EVALKIT_TASKS_DIR"):
        return Path(os.environ["EVALKIT_TASKS_DIR"])
    return Path(__file__).resolve().parents[2] / "tasks"


def available_tasks() -> dict[str, Path]:
    directory = tasks_dir()
    return {p.stem: p for p in sorted(directory.glob("*.yaml"))} if directory.is_dir() else {}


@dataclass
class TaskSelection:
    spec: TaskSpec
    subjects: list[str] | None  # None: every subject of the spec


def resolve_tasks(argument: str) -> list[TaskSelection]:
    """Parse ``--tasks mmlu,cmmlu:agronomy,path/to/spec.yaml`` keeping the user's order."""
    selections: dict[str, TaskSelection] = {}
    known = available_tasks()
    for token in (t.strip() for t in argument.split(",")):
        if not token:
            continue
        name, _, subject = token.partition(":")
        if name.endswith((".yaml", ".yml")):
            path = Path(name)
            if not path.is_file():
                raise EvalkitError(f"task spec {path} does not exist; check the path")
        elif name in known:
            path = known[name]
        else:
            listing = ", ".join(known) or f"none found in {tasks_dir()}"
            raise EvalkitError(f"unknown task {name!r}; available tasks: {listing} (or pass a spec .yaml path)")
        key = str(path.resolve())
        if key not in selections:
            selections[key] = TaskSelection(load_spec(path), None if not subject else [])
        selection = selections[key]
        if subject:
            subjects = getattr(selection.spec, "subjects", {})
            if subject not in subjects:
                raise EvalkitError(
                    f"unknown subject {subject!r} for task {selection.spec.name} ({path}); "
                    f"run `evalkit tasks {selection.spec.name}` to list its subjects"
                )
            if selection.subjects is not None and subject not in selection.subjects:
                selection.subjects.append(subject)
        else:
            selection.subjects = None
    if not selections:
        raise EvalkitError("--tasks is empty; name at least one task, e.g. --tasks cmmlu")
    return list(selections.values())
