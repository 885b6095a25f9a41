"""Results store: runs recorded with per-subject scores, idempotent import, concurrent writers, training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from evalkit.errors import EvalkitError
from evalkit.evaluate import run_evaluation
from evalkit.evaluators.base import RunConfig
from evalkit.store import Run, Score, TaskResult, import_directory, model_key, open_store, record_training
from tests.conftest import REPO
from tests.helpers import run_cli


def _evaluate(tiny_lm, out: Path, store: str) -> dict:
    config = RunConfig(limit=2, progress=False)
    return run_evaluation("tiny", "cmmlu:agronomy,cmmlu:anatomy", config, str(out), lm=tiny_lm, store=store)


def test_evaluation_is_recorded_with_subject_scores_and_samples(tiny_lm, tmp_path, capsys):
    store = str(tmp_path / "store.sqlite")
    results = _evaluate(tiny_lm, tmp_path / "out", store)
    run_id = results["store"]["run_id"]
    assert run_id is not None

    factory, _ = open_store(store)
    with factory() as session:
        run = session.get(Run, run_id)
        assert run.kind == "evaluation" and run.status == "complete"
        assert run.model_key == model_key({k: v for k, v in results["model"].items()
                                           if k not in ("name", "dtype", "device", "context_length")})
        assert run.profile["memory"]["peak_rss_mb"] > 0
        [task] = run.tasks
        block = results["tasks"]["cmmlu"]
        assert (task.task, task.spec_sha256, task.prompt_sha256) == ("cmmlu", block["spec_sha256"], block["prompt_sha256"])
        assert task.score == pytest.approx(block["micro"]["acc"])
        assert Path(task.samples_file).is_file()
        subjects = {s.group: s.value for s in task.scores if s.level == "subject"}
        assert subjects == pytest.approx({k: v["acc"] for k, v in block["subjects"].items()})
        assert {s.group for s in task.scores if s.level == "category"} == set(block["categories"])

    # the same results file recorded again (or imported) keeps its run id: no duplicate rows
    new, known, skipped = import_directory(tmp_path / "out", store)
    assert new == [] and known == [run_id] and skipped == []
    with factory() as session:
        assert session.scalar(select(func.count(Run.id))) == 1

    code, out, _ = run_cli(capsys, "runs", "--store", store)
    assert code == 0 and "cmmlu: acc" in out and str(run_id) in out


def test_import_loads_results_written_elsewhere(tiny_lm, tmp_path, capsys):
    results = run_evaluation("tiny", "cmmlu:agronomy", RunConfig(limit=2, progress=False), str(tmp_path / "out"),
                             lm=tiny_lm, record=False)
    assert "store" not in results
    (tmp_path / "out" / "notes.json").write_text("{}")
    (tmp_path / "out" / "results_broken.json").write_text("{not json")
    store = str(tmp_path / "other.sqlite")
    code, out, _ = run_cli(capsys, "import", str(tmp_path / "out"), "--store", store)
    assert code == 0 and "recorded 1 new run(s)" in out and "results_broken.json" in out
    factory, _ = open_store(store)
    with factory() as session:
        task = session.scalars(select(TaskResult)).one()
        assert task.samples_file == str(Path(results["results_file"]).parent / results["tasks"]["cmmlu"]["samples_file"])


def test_bad_store_url_is_one_line_error(tmp_path):
    with pytest.raises(EvalkitError, match="not a database URL"):
        open_store("no-such-driver+://")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EvalkitError, match="cannot create the store's directory"):
        open_store(str(blocker / "sub" / "store.sqlite"))


def test_four_concurrent_runs_all_land_complete(tiny_model_dir, tmp_path):
    store = tmp_path / "shared.sqlite"
    env = {**os.environ, "EVALKIT_STORE": "/nonexistent/never-used.sqlite", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "evalkit.cli", "run", "--model", str(tiny_model_dir),
                               "--tasks", "cmmlu:agronomy", "--limit", "2", "--no-progress",
                               "--output-dir", str(tmp_path / f"out{i}"), "--store", str(store)],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "warning" not in err
    factory, _ = open_store(str(store))
    with factory() as session:
        runs = session.scalars(select(Run)).all()
        assert len(runs) == 4 and all(r.status == "complete" for r in runs)
        assert len({r.results_file for r in runs}) == 4
        assert {r.model_key for r in runs} == {runs[0].model_key}  # same weights, same identity
        for run in runs:
            [task] = run.tasks
            assert task.n == 2 and [s.group for s in task.scores if s.level == "subject"] == ["agronomy"]
        assert session.scalar(select(func.count(Score.id))) == 4 * len(runs[0].tasks[0].scores)
    import sqlite3

    assert sqlite3.connect(store).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_training_run_links_to_its_checkpoint_evaluations(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from evalkit.models import load_model

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tiny_model_dir)
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    loaded = load_model(str(adapter))
    manifest = {"recipe": "lora", "steps": 3, "final_loss": 2.5, "data_sha256": "ab" * 32,
                "base_model": {"name": str(tiny_model_dir), "identity": loaded.identity["base"]}}
    (adapter / "train_manifest.json").write_text(json.dumps(manifest))
    store = str(tmp_path / "store.sqlite")
    run_id = record_training(adapter, manifest, {"memory": {"peak_rss_mb": 123.0}}, store=store)
    assert record_training(adapter, manifest, store=store) == run_id  # idempotent
    factory, _ = open_store(store)
    with factory() as session:
        run = session.get(Run, run_id)
        assert run.kind == "training" and run.tasks[0].score == 2.5 and run.profile["memory"]["peak_rss_mb"] == 123.0
        # the evaluation of the same adapter lands under the same model key
        assert run.model_key == model_key(loaded.identity)
        assert run.base_model_key == model_key(loaded.identity["base"])
