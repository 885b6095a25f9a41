"""Find task specs by name (``cmmlu``), by file (``my_task.yaml``) or with subjects (``cmmlu:agronomy``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.resources import resource_dir
from evalkit.tasks.loading import load_spec
from evalkit.tasks.spec import TaskSpec


def tasks_dir() -> Path:
    """The built-in task specs (``evalkit/resources/tasks``); ``EVALKIT_TASKS_DIR`` replaces them."""
    if os.environ.get("EVALKIT_TASKS_DIR"):
        return Path(os.environ["EVALKIT_TASKS_DIR"])
    return resource_dir("tasks")


_include_paths: list[Path] = []  # this command's --include-path directories


def set_include_paths(paths: list[str] | None) -> None:
    """Search ``paths`` (``--include-path DIR``, repeatable) for task specs before all other directories.

    Each call replaces the previous one's directories (one command, one set).
    """
    _include_paths[:] = [_include_dir(p, "--include-path") for p in paths or []]


def _include_dir(text: str | Path, source: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise EvalkitError(f"{source} {text} {what}; name a directory of task spec .yaml files")
    return path


def search_path() -> list[Path]:
    """Where task names are looked up, first match wins: ``--include-path`` directories, then
    ``$EVALKIT_INCLUDE_PATH`` (os.pathsep-separated), then the built-in tasks (or ``$EVALKIT_TASKS_DIR``)."""
    included = [p for p in os.environ.get("EVALKIT_INCLUDE_PATH", "").split(os.pathsep) if p.strip()]
    return [*_include_paths, *(_include_dir(p, "EVALKIT_INCLUDE_PATH entry") for p in included), tasks_dir()]


def available_tasks() -> dict[str, Path]:
    """Task name -> spec file; a user's spec shadows a built-in one of the same name."""
    found: dict[str, Path] = {}
    for directory in search_path():
        if directory.is_dir():
            for path in sorted(directory.glob("*.yaml")):
                found.setdefault(path.stem, path)
    return found


@dataclass
class TaskSelection:
    spec: TaskSpec
    subjects: list[str] | None  # None: every subject of the spec
    default_fewshot: int | None = None  # an lm-eval task file's num_fewshot (multiple choice), for --num-fewshot


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
            listing = ", ".join(known) or f"none found in {', '.join(map(str, search_path()))}"
            raise EvalkitError(f"unknown task {name!r}; available tasks: {listing} (or pass a spec .yaml path)")
        key = str(path.resolve())
        if key not in selections:
            spec, default_fewshot = _load(path)
            selections[key] = TaskSelection(spec, None if not subject else [], default_fewshot)
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


def _load(path: Path) -> tuple[TaskSpec, int | None]:
    """An evalkit spec, or an lm-eval task file imported as one (evalkit/tasks/lmeval_import.py)."""
    from evalkit.tasks.lmeval_import import is_lmeval_file, load_lmeval_spec

    if is_lmeval_file(path):
        spec, default_fewshot = load_lmeval_spec(path)
        return spec, default_fewshot
    return load_spec(path), None
