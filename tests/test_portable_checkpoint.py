"""An adapter trained on an embedded model is portable: it names its base by the hub id, and evaluates
offline from another directory with another model cache (the embedded model is found again by that id);
its results name the base by alias and weights hash and the task spec by name, with no path of this
checkout, its virtualenv or either model cache in any results or samples file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from evalkit.cache import cache_dir
from evalkit.cli import main
from tests.conftest import REPO, SMOLLM2

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_adapter_trained_on_the_embedded_model_evaluates_elsewhere(tmp_path):
    trained = tmp_path / "trained"
    code = main(["train", "trainers/lora.yaml", "max_steps=1", "max_samples=4", "val_size=0", "cutoff_len=64",
                 "per_device_train_batch_size=4", "save_steps=100", "report_to=none", f"output_dir={trained}",
                 "--no-store"])
    assert code == 0
    config = json.loads((trained / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["base_model_name_or_path"] == HUB_ID
    manifest = json.loads((trained / "train_manifest.json").read_text(encoding="utf-8"))
    base = manifest["base_model"]
    assert (base["kind"], base["alias"], base["hub_id"]) == ("embedded", SMOLLM2, HUB_ID) and "path" not in base
    training_cache = str(cache_dir())

    for name in ("adapter_config.json", "README.md"):  # PEFT's model card names the base too
        assert training_cache not in (trained / name).read_text(encoding="utf-8"), name

    moved = tmp_path / "elsewhere" / "my-adapter"
    shutil.copytree(trained, moved)
    shutil.rmtree(trained)  # nothing may point back at the training directory
    new_cache, hf_home, results = tmp_path / "new-cache", tmp_path / "empty-hf-home", tmp_path / "results"
    env = {**os.environ, "EVALKIT_CACHE_DIR": str(new_cache), "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "EVALKIT_REQUEST_CACHE": "off"}
    done = subprocess.run([sys.executable, "-m", "evalkit.cli", "run", "--model", str(moved), "--tasks", "cmmlu:agronomy",
                           "--limit", "2", "--backend", "hf", "--output-dir", str(results), "--no-progress", "--no-store"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (new_cache / "models").is_dir()  # the embedded model was found again (and dequantised) in the new cache

    (results_file,) = results.rglob("results_*.json")
    record = json.loads(results_file.read_text(encoding="utf-8"))
    base_record = record["model"]["base"]
    assert (base_record["kind"], base_record["alias"]) == ("embedded", SMOLLM2)
    assert base_record["weights_sha256"] == base["weights_sha256"]
    assert record["tasks"]["cmmlu"]["spec"] == "cmmlu" and len(record["tasks"]["cmmlu"]["spec_sha256"]) == 64

    written = [results_file, *results.rglob("samples_*.jsonl")]
    assert len(written) == 2
    forbidden = {"checkout": str(REPO), "virtualenv": sys.prefix, "training cache": training_cache,
                 "new cache": str(new_cache)}
    for file in written:
        text = file.read_text(encoding="utf-8")
        for what, path in forbidden.items():
            assert path not in text, f"{file.name} contains the {what} path {path}"


def test_a_hub_id_without_an_evalkit_manifest_stays_a_hub_model(tmp_path):
    """Only an adapter that evalkit trained on the embedded model maps the hub id back to it."""
    from evalkit.models.source import resolve_model

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": HUB_ID, "peft_type": "LORA"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    assert resolve_model(str(adapter)).base.kind == "hub"
    (adapter / "train_manifest.json").write_text(json.dumps({"base_model": {"kind": "embedded", "alias": SMOLLM2}}))
    assert resolve_model(str(adapter)).base.kind == "embedded" and resolve_model(str(adapter)).base.spec == SMOLLM2


def test_task_spec_recorded_by_name_still_read_by_reports(tmp_path, monkeypatch, capsys):
    """The report readers of ``spec`` (category pairing, subject counts, generation instructions) resolve the
    recorded name from any working directory."""
    from evalkit.report.compare import _category_members
    from evalkit.report.leaderboard_cells import _spec_subjects
    from evalkit.report.samples import instructions

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--backend", "fake", "--model", "fake-model", "--tasks", "cmmlu:agronomy,alpaca_zh",
                 "--limit", "2", "--no-store", "--no-progress", "--output-dir", str(tmp_path / "results")]) == 0
    (results_file,) = (tmp_path / "results").rglob("results_*.json")
    tasks = json.loads(results_file.read_text(encoding="utf-8"))["tasks"]
    assert (tasks["cmmlu"]["spec"], tasks["alpaca_zh"]["spec"]) == ("cmmlu", "alpaca_zh")
    assert _category_members(tasks["cmmlu"]) and _spec_subjects("cmmlu") == 67
    (samples,) = (tmp_path / "results").rglob("samples_alpaca_zh_*.jsonl")
    rows = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    assert len(instructions(tasks["alpaca_zh"], rows)) == 2


def test_a_users_own_spec_keeps_its_path(tmp_path):
    from evalkit.results import builtin_spec_name
    from evalkit.resources import resource_dir

    own = tmp_path / "cmmlu.yaml"
    own.write_text((resource_dir("tasks") / "cmmlu.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    assert builtin_spec_name(str(own)) is None
    assert builtin_spec_name(str(resource_dir("tasks") / "cmmlu.yaml")) == "cmmlu"
