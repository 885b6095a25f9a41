"""Read the YAML files users write (task specs, suites, leaderboard definitions, recipes): a syntax error is
one line naming the file, never a parser traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from evalkit.errors import EvalkitError


def read_yaml(path: Path, fix: str = "fix the file") -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise EvalkitError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); {fix}") from None
