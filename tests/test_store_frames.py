"""`evalkit runs --format csv|json|parquet` and evalkit.store's DataFrames hold the results files' numbers."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from tests.helpers import run_cli


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from evalkit.cli import main

    root = tmp_path_factory.mktemp("frames")
    for model, tasks, limit in (("a", "cmmlu:agronomy,cmmlu:anatomy", "6"), ("b", "cmmlu:agronomy,alpaca_zh", "4")):
        assert main(["run", "--backend", "fake", "--model", model, "--tasks", tasks, "--limit", limit, "--no-progress",
                     "--output-dir", str(root / "out"), "--store", str(root / "store.sqlite")]) == 0
    return root


def results_files(root):
    return {json.loads(p.read_text(encoding="utf-8"))["model"]["name"]: json.loads(p.read_text(encoding="utf-8"))
            for p in (root / "out").rglob("results_*.json")}


def test_parquet_and_csv_hold_the_results_files_scores(store, capsys):
    url = str(store / "store.sqlite")
    assert run_cli(capsys, "runs", "--store", url, "--format", "parquet", "--output", str(store / "runs.parquet"))[0] == 0
    parquet = pd.read_parquet(store / "runs.parquet")
    code, out, _ = run_cli(capsys, "runs", "--store", url, "--format", "csv")
    assert code == 0
    csv = pd.read_csv(io.StringIO(out))
    files = results_files(store)
    assert len(parquet) == len(csv) == sum(len(r["tasks"]) for r in files.values()) == 3
    for frame in (parquet, csv):
        for _, row in frame.iterrows():
            block = files[row["model"]]["tasks"][row["task"]]
            expected = block["micro"]["acc"] if row["task"] == "cmmlu" else block["rouge-l"]
            assert row["score"] == pytest.approx(expected, abs=1e-12) and row["n"] == (block.get("micro") or block)["n"]
    code, out, _ = run_cli(capsys, "runs", "--store", url, "--format", "json", "--task", "alpaca_zh")
    assert code == 0 and [r["model"] for r in json.loads(out)] == ["b"]


def test_dataframe_api_matches_results_and_samples(store):
    from evalkit.store import runs_frame, samples_frame, scores_frame

    url = str(store / "store.sqlite")
    files = results_files(store)
    runs = runs_frame(url)
    assert sorted(runs.model) == ["a", "b"] and runs.peak_rss_mb.notna().all()
    subjects = scores_frame(url, task="cmmlu", level="subject")
    for _, row in subjects.iterrows():
        model = runs.set_index("id").loc[row.run_id, "model"]
        block = files[model]["tasks"]["cmmlu"]["subjects"][row.group]
        assert row.value == pytest.approx(block["acc"]) and row.n == block["n"]
    samples = samples_frame(url, model="a", task="cmmlu")
    assert len(samples) == files["a"]["tasks"]["cmmlu"]["micro"]["n"] == 12
    assert samples.correct.mean() == pytest.approx(files["a"]["tasks"]["cmmlu"]["micro"]["acc"])
    assert runs_frame(url, since="2999-01-01").empty and runs_frame(url, tag="accepted").empty


def test_parquet_without_output_is_one_line(store, capsys):
    code, _, err = run_cli(capsys, "runs", "--store", str(store / "store.sqlite"), "--format", "parquet")
    assert code == 2 and err.startswith("evalkit: error: --format parquet") and err.count("\n") == 1
