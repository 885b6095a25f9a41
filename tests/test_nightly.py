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


def _index_tables(index: Path) -> dict[str, list[dict]]:
    """The leaderboard index's tables, read from its HTML: {setting heading or "ranked": [{label, runs, run ids}]}."""
    import re

    html = index.read_text(encoding="utf-8")
    tables = {}
    for match in re.finditer(r'(?:<h3 id="[^"]+" class="setting">([^<]+)</h3>\s*)?<div class="table-scroll">\s*<table id="([^"]+)"'
                             r'(.*?)</table>', html, re.S):
        heading, table_id, body = match.groups()
        rows = []
        for row in re.findall(r"<tr data-model-key.*?</tr>", body, re.S):
            label = re.search(r'class="model-cell" data-sort="([^"]+)"', row).group(1)
            runs = re.search(r'<td class="num runs" data-sort="(\d+)" title="([^"]*)"', row)
            rows.append({"label": label, "runs": int(runs.group(1)), "ids": [int(i) for i in re.findall(r"#(\d+) ", runs.group(2))]})
        tables["ranked" if table_id == "leaderboard" else heading.strip()] = rows
    return tables


def _two_nights(suite: Path, store: str, *nights: str) -> None:
    for night in nights:
        code, out, err = cli("nightly", str(suite), "--night", night, "--store", store)
        assert code == 0, err


def _check_site_shows_every_model_and_night(site: Path, models: list[str], store: str, nights: int) -> None:
    from evalkit.store.query import list_runs

    runs = [r for r in list_runs(store) if r.kind == "evaluation"]
    labels = {r.model_key: r.model_label for r in runs}
    tables = _index_tables(site / "index.html")
    rows = [row for table in tables.values() for row in table]
    assert {row["label"] for row in rows} == set(labels.values()) and len(labels) == len(models)
    for table in tables.values():  # one row per model and setting: no duplicates
        assert len({row["label"] for row in table}) == len(table)
    # each row counts its runs (one a night per suite task in that setting) and names them
    assert all(row["runs"] == len(row["ids"]) and row["runs"] % nights == 0 for row in rows)
    assert sorted(i for row in rows for i in row["ids"]) == sorted(r.id for r in runs)
    for key in labels:  # each model's page: its history over both nights
        page = (site / "models" / f"{key}.html").read_text(encoding="utf-8")
        for run in (r for r in runs if r.model_key == key):
            assert f">{run.id}</td>" in page and run.created_at in page
    html = (site / "index.html").read_text(encoding="utf-8")
    assert f"{len(models)} model(s)" in html and "0 model(s)" not in html


def test_two_nights_of_two_fake_models_publish_both_on_the_leaderboard(tmp_path):
    """The smoke suite's shape (every task with a limit: partial runs) on --backend fake: the published site
    lists both models, one row per model and setting, each with both nights' runs."""
    store = str(tmp_path / "store.sqlite")
    suite = write_suite(tmp_path, ["model-a", "model-b"], backend="fake",
                        tasks=[{"task": "cmmlu:agronomy,cmmlu:anatomy", "limit": 3},
                               {"task": "mmlu", "limit": 1}, {"task": "alpaca_zh", "limit": 4, "max_new_tokens": 8}])
    _two_nights(suite, store, "2026-11-22", "2026-11-23")
    verdict = json.loads((tmp_path / "nightly" / "verdict.json").read_text())
    assert verdict["verdict"] == "pass" and all(v["baseline"] for v in verdict["models"].values())
    _check_site_shows_every_model_and_night(tmp_path / "site", ["model-a", "model-b"], store, nights=2)
    tables = _index_tables(tmp_path / "site" / "index.html")
    assert all(row["runs"] == 2 for table in tables.values() for row in table)  # one task per setting here
    assert "ranked" not in tables  # every run used a limit
    assert set(tables) == {"limit 1 · 0-shot", "limit 3 · 0-shot · cmmlu 2/67 subjects", "limit 4 · 0-shot"}


def test_an_unknown_backend_in_a_suite_is_one_line(tmp_path):
    suite = write_suite(tmp_path, ["model-a"], backend="nope")
    code, _, err = cli("nightly", str(suite), "--store", str(tmp_path / "s.sqlite"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "backend" in err and "fake" in err


@pytest.mark.slow
def test_the_smoke_suite_two_nights_publishes_both_models(tmp_path):
    """suites/smoke.yaml itself (both embedded models, ~3 minutes a night on 2 cores): the site CI publishes."""
    from tests.conftest import REPO

    store = str(tmp_path / "store.sqlite")
    for night in ("2026-11-22", "2026-11-23"):
        code, out, err = cli("nightly", str(REPO / "suites" / "smoke.yaml"), "--night", night, "--store", store,
                             "--output", str(tmp_path / "nightly"), "--leaderboard", str(tmp_path / "site"))
        assert code in (0, 1), err  # a regression verdict still publishes the site
    _check_site_shows_every_model_and_night(tmp_path / "site", ["smollm2-135m-instruct", "gemma3-270m"], store, nights=2)
