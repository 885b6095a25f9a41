"""The nightly CI workflow: valid against the GitHub workflow schema (check-jsonschema's vendored copy), on a
schedule and by hand, and every command it runs is one the README documents."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "nightly.yml"


def test_workflow_matches_the_github_schema():
    checker = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    if not Path(checker).is_file():
        pytest.skip("check-jsonschema is not installed (pip install -e '.[test]')")
    done = subprocess.run([checker, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _steps() -> list[dict]:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert "schedule" in triggers and "workflow_dispatch" in triggers
    return workflow["jobs"]["nightly"]["steps"]


def test_workflow_commands_are_the_readmes():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = [step["run"].strip() for step in _steps() if "run" in step]
    assert commands, "the workflow runs no command"
    for command in commands:
        assert command in readme, f"workflow command not in the README: {command}"
    assert "bash scripts/setup.sh" in commands
    assert any(c.startswith(".venv/bin/evalkit nightly suites/") for c in commands)
    assert ".venv/bin/python -m pytest -q -m slow" in commands
    # the suite it runs exists, and the store URL comes from a secret
    suite = next(c for c in commands if "evalkit nightly" in c).split()[2]
    assert (REPO / suite).is_file()
    assert "secrets.EVALKIT_STORE" in WORKFLOW.read_text(encoding="utf-8")


def test_workflow_uploads_the_site_and_verdict_and_caches_models():
    steps = _steps()
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "nightly/site" in upload["with"]["path"] and "nightly/verdict.json" in upload["with"]["path"]
    caches = " ".join(s["with"]["path"] for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert "~/.cache/evalkit" in caches and "~/.cache/pip" in caches
