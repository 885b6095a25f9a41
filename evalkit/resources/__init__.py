"""Files evalkit reads at run time, shipped inside the package (wheel and sdist alike).

``tasks/`` (task specs and their vendored data), ``reports/`` (Jinja2 templates, CSS, JS),
``leaderboards/``, ``trainers/`` (training recipes) and ``suites/`` (nightly suites). A checkout
has top-level symlinks to these folders, so ``tasks/cmmlu.yaml`` and ``trainers/lora.yaml`` are
valid paths there; an installed evalkit finds them here, from any working directory.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

NAMES = ("tasks", "reports", "leaderboards", "trainers", "suites")


def resource_dir(name: str) -> Path:
    """The packaged folder ``name`` (one of ``NAMES``), e.g. ``resource_dir("tasks") / "cmmlu.yaml"``."""
    if name not in NAMES:
        raise ValueError(f"unknown resource folder {name!r}; one of {', '.join(NAMES)}")
    return Path(str(files(__name__) / name))  # evalkit is installed as files, never zipped


def builtin_file(name: str | Path, folder: str, suffixes: tuple[str, ...] = (".yaml", ".yml")) -> Path | None:
    """The packaged file that ``name`` refers to, or None.

    ``name`` is a path written from the checkout's root (``trainers/lora.yaml``,
    ``tasks/data/sft/alpaca_zh_demo.json``), a path inside ``folder`` (``lora.yaml``,
    ``accelerate/ddp.yaml``) or a bare name (``lora``, with one of ``suffixes`` added).
    Callers try the user's own path first: a file that exists where the user points always wins.
    """
    text = str(name)
    if not text or Path(text).is_absolute():
        return None
    parts = Path(text).parts
    if ".." in parts:
        return None
    root = resource_dir(folder)
    relative = Path(*parts[1:]) if parts[0] == folder and len(parts) > 1 else Path(*parts)
    candidates = [root / relative]
    if relative.suffix not in suffixes:
        candidates += [root / f"{relative}{suffix}" for suffix in suffixes]
    return next((c for c in candidates if c.is_file()), None)


def packaged_path(name: str | Path) -> Path | None:
    """``tasks/data/sft/alpaca_zh_demo.json`` and the like (a path from the checkout's root whose
    first part is one of ``NAMES``), resolved against the package; None if it is not such a file."""
    parts = Path(str(name)).parts
    if len(parts) < 2 or parts[0] not in NAMES or ".." in parts:
        return None
    candidate = resource_dir(parts[0]).joinpath(*parts[1:])
    return candidate if candidate.is_file() else None
