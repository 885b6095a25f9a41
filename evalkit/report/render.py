"""Jinja2 rendering of the HTML pages; templates, CSS and JS ship in ``evalkit/resources/reports/``.

Autoescape is on for every template, so model names, predictions and dataset text are always
shown as text; only chart fragments and our own assets are passed as ``Markup``.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from markupsafe import Markup

from evalkit import __version__
from evalkit.errors import EvalkitError
from evalkit.resources import resource_dir


def templates_dir() -> Path:
    """The packaged templates (``evalkit/resources/reports``); ``EVALKIT_REPORTS_DIR`` points elsewhere."""
    if os.environ.get("EVALKIT_REPORTS_DIR"):
        return Path(os.environ["EVALKIT_REPORTS_DIR"])
    return resource_dir("reports")


@lru_cache(maxsize=4)
def _environment(directory: str):
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    from evalkit.report.charts import plotly_js

    env = Environment(loader=FileSystemLoader(directory), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.globals["asset"] = lambda name: Markup((Path(directory) / name).read_text(encoding="utf-8"))
    env.globals["plotly_js"] = plotly_js
    return env


def render(template: str, **context) -> str:
    directory = templates_dir()
    if not (directory / template).is_file():
        raise EvalkitError(f"{directory / template}: template missing; set EVALKIT_REPORTS_DIR to the reports/ folder")
    context.setdefault("evalkit_version", __version__)
    context.setdefault("generated_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    context.setdefault("charts", False)
    return _environment(str(directory)).get_template(template).render(**context)


def write_new(path: Path, text: str, force: bool = False) -> Path:
    """Write ``path``; an existing file is kept unless ``force`` (then replaced atomically)."""
    path = Path(path)
    if path.exists() and not force:
        raise EvalkitError(f"{path} already exists; choose another --output or pass --force to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        raise EvalkitError(f"{path}: cannot write ({exc.strerror}); choose another --output") from None
    return path
