"""`evalkit nightly`: two nights of a suite on a tiny model; the second is gated against the first (accepted)
and passes, the leaderboard shows both nights, a rerun of a night skips its finished tasks, bad suites exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.test_gate import cli


def write_suite(directory: Path, models: list[str], **overrides) -> Path:
    suite = {"name": "tiny-smoke", "models": models,
             "tasks": [{"task": "cmmlu:agronomy,cmmlu:anatomy", "limit": 6, "truncation": "left"},
                       {"task": "alpaca_zh", "limit": 4, "max_new_tokens": 4}],
             "gate": {"min_effect": 1.0, "profile": {"peak_rss_mb": {"tolerance": 0.5}}},
             "output": str(directory / "nightly"),
             "leaderboard": {"output": str(directory / "site")}, **overrides}
    path = directory / "suite.yaml"
    path.write_text(yaml.safe_dump(suite), encoding="utf-8")
    return path


def test_two_nights_second_gated_against_the_first_and_leaderboard_shows_both(tmp_path, tiny_model_dir, one_thread):
    from evalkit.store.query import list_runs
    from evalkit.store.tags import accepted_runs

    store = str(tmp_path / "store.sqlite")
    suite = write_suite(tmp_path, [str(tiny_model_dir)])
    code, out, err = cli("nightly", str(suite), "--night", "2026-11-22", "--store", store)
    assert code == 0, err
    assert "no accepted baseline yet" in out
    first = json.loads((tmp_path / "nightly" / "2026-11-22" / "verdict.json").read_text())
    night1 = first["models"][str(tiny_model_dir)]["candidate"]["runs"]
    assert first["verdict"] == "pass" and len(night1) == 2  # one run per task entry
    assert [r.id for r in accepted_runs(str(tiny_model_dir), "tiny-smoke", store)] == night1

    summary = tmp_path / "step_summary.md"
    code, out, err = cli("nightly", str(suite), "--night", "2026-11-23", "--store", store, "--summary", str(summary))
    assert code == 0, err
    second = json.loads((tmp_path / "nightly" / "verdict.json").read_text())  # the latest night's copy
    verdict = second["models"][str(tiny_model_dir)]
    assert second["night"] == "2026-11-23" and verdict["verdict"] == "pass"
    assert verdict["baseline"]["runs"] == night1  # gated against the first night's accepted runs
    night2 = verdict["candidate"]["runs"]
    assert set(night2).isdisjoint(night1)
    tasks = {r["task"] for r in verdict["rows"] if r["check"] == "paired"}
    assert tasks == {"cmmlu", "alpaca_zh"}
    assert all(Path(p).is_file() for p in verdict["reports"]) and len(verdict["reports"]) == 2
    assert "no regression" in summary.read_text()
    assert [r.id for r in accepted_runs(str(tiny_model_dir), "tiny-smoke", store)] == night1 + night2

    # the leaderboard's model page lists both nights' runs
    page = next((tmp_path / "site" / "models").glob("*.html")).read_text(encoding="utf-8")
    for run in list_runs(store):
        assert f">{run.id}</td>" in page and run.created_at in page
    assert len(list_runs(store)) == 4

    # a rerun of the same night skips what is done (a killed night resumes rather than starting over)
    code, out, err = cli("nightly", str(suite), "--night", "2026-11-23", "--store", store)
    assert code == 0, err
    assert out.count("already done tonight") == 2 and len(list_runs(store)) == 4


def test_bad_suites_exit_2_with_one_line(tmp_path):
    code, _, err = cli("nightly", str(tmp_path / "missing.yaml"))
    assert code == 2 and "does not exist" in err
    suite = write_suite(tmp_path, ["smollm2-135m-instruct"], tasks=[{"task": "cmmlu", "limit": 0}])
    code, _, err = cli("nightly", str(suite))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "tasks.0.limit" in err
    suite = write_suite(tmp_path, [str(tmp_path / "nothing-*")])
    code, _, err = cli("nightly", str(suite), "--store", str(tmp_path / "s.sqlite"))
    assert code == 2 and "matches no directory" in err
    suite = write_suite(tmp_path, ["smollm2-135m-instruct"], baseline={"pinned": {"other": ["x.json"]}}, typo=1)
    code, _, err = cli("nightly", str(suite))
    assert code == 2 and "typo" in err


def test_the_example_suite_loads():
    from evalkit.nightly import load_suite

    from tests.conftest import REPO

    suite = load_suite(REPO / "suites" / "smoke.yaml")
    assert suite.models == ["smollm2-135m-instruct", "gemma3-270m"] and suite.gate.profile["peak_rss_mb"].fail
