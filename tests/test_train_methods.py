"""Every training method trains 5 steps on the tiny model, its loss goes down on a fixed batch, and
its checkpoint loads in ``evalkit run`` with scores that differ from the base model's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from evalkit.cli import main

# Learning rates that move a random 2-layer model visibly in 5 steps.
FULL_LR, ADAPTER_LR = 1e-3, 1e-2


def write_recipe(directory: Path, model_dir: Path, **options) -> Path:
    """A recipe over the real alpaca_zh training slice; 4 records, batch 4: every step sees the same batch."""
    recipe = {
        "model": str(model_dir), "method": "lora", "dataset": "tasks/data/sft/alpaca_zh_demo.json",
        "dataset_range": [0, 900], "max_samples": 4, "per_device_train_batch_size": 4, "cutoff_len": 128,
        "max_steps": 5, "logging_steps": 1, "save_steps": 100, "learning_rate": ADAPTER_LR, "report_to": "none",
        "output_dir": str(directory / "out"), "freeze_trainable_layers": 1,
    }
    recipe.update(options)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def train(directory: Path, model_dir: Path, *overrides: str, **options) -> tuple[Path, dict]:
    recipe = write_recipe(directory, model_dir, **options)
    assert main(["train", str(recipe), *overrides]) == 0
    output = Path(yaml.safe_load(recipe.read_text())["output_dir"])
    overrides_map = dict(o.split("=", 1) for o in overrides)
    output = Path(overrides_map.get("output_dir", output))
    return output, json.loads((output / "train_manifest.json").read_text(encoding="utf-8"))


def cmmlu_probabilities(model: Path, results_dir: Path) -> list[list[float]]:
    code = main(["run", "--model", str(model), "--tasks", "cmmlu:agronomy", "--limit", "2",
                 "--output-dir", str(results_dir), "--no-progress"])
    assert code == 0
    (samples,) = results_dir.rglob("samples_*.jsonl")
    return [json.loads(line)["probabilities"] for line in samples.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def base_probabilities(tiny_model_dir, tmp_path_factory):
    return cmmlu_probabilities(tiny_model_dir, tmp_path_factory.mktemp("base-run"))


CASES = {
    "full": dict(method="full", learning_rate=FULL_LR),
    "freeze": dict(method="freeze", learning_rate=FULL_LR),
    "lora": dict(method="lora"),
    "qlora-nf4": dict(method="qlora", quantization_bit=4),
    "qlora-8bit": dict(method="qlora", quantization_bit=8),
    "dora": dict(method="dora"),
    "rslora": dict(method="rslora"),
    "loraplus": dict(method="loraplus", learning_rate=1e-3),
    "pissa": dict(method="pissa"),
    "galore": dict(method="galore", learning_rate=FULL_LR, galore_rank=8),
    "prefix": dict(method="prefix", learning_rate=3e-2),
    "adapter": dict(method="adapter", adapter_size=16),
    "lora+neftune": dict(method="lora", neftune_alpha=5.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_method_trains_and_checkpoint_evaluates(case, tiny_model_dir, tmp_path, base_probabilities):
    output, manifest = train(tmp_path, tiny_model_dir, **CASES[case])
    curve = [point["loss"] for point in manifest["loss_curve"]]
    assert manifest["global_step"] == 5 and len(curve) == 5
    assert curve[-1] < curve[0], f"{case}: loss did not go down on a fixed batch: {curve}"
    assert 0 < manifest["trainable_parameters"] <= manifest["total_parameters"]
    assert manifest["base_model"]["path"] == str(tiny_model_dir.resolve())
    assert manifest["data"]["range"] == [0, 4] and len(manifest["data"]["sha256"]) == 64
    if (output / "adapter_config.json").is_file():
        config = json.loads((output / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(tiny_model_dir.resolve())
    probabilities = cmmlu_probabilities(output, tmp_path / "run")
    assert probabilities != base_probabilities, f"{case}: the checkpoint scores exactly like the base model"


def test_trainable_parameter_counts_follow_the_method(tiny_model_dir, tmp_path):
    """rank 8 on every linear layer of 2 layers: r * (in + out) summed over q,k,v,o,gate,up,down."""
    _, lora = train(tmp_path / "a", tiny_model_dir, method="lora", max_steps=1)
    hidden, inter, kv = 64, 128, 32  # 4 heads of 16, 2 kv heads
    per_layer = 8 * ((hidden + hidden) * 2 + (hidden + kv) * 2 + (hidden + inter) * 3)
    assert lora["trainable_parameters"] == 2 * per_layer
    _, freeze = train(tmp_path / "b", tiny_model_dir, method="freeze", max_steps=1, freeze_trainable_modules=["mlp"])
    assert freeze["trainable_parameters"] == 3 * hidden * inter  # gate, up, down of the last layer only
