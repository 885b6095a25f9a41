"""Small helpers shared by tests: temporary task specs over temporary data."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import REPO


def spec_copy(task: str, directory: Path, data_dir: Path, subjects: list[str] | None = None, **overrides) -> Path:
    """Copy tasks/<task>.yaml into ``directory`` with its data read from ``data_dir``."""
    raw = yaml.safe_load((REPO / "tasks" / f"{task}.yaml").read_text(encoding="utf-8"))
    raw["data"]["dir"] = str(data_dir)
    raw["data"].pop("hub", None)
    if subjects is not None:
        raw["subjects"] = {k: v for k, v in raw["subjects"].items() if k in subjects}
    raw.update(overrides)
    path = directory / f"{task}.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from evalkit.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
