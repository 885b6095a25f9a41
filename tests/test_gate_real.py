"""`evalkit gate` on the real embedded SmolLM2-135M-Instruct (nightly, -m slow): a deliberately worse checkpoint
(Gaussian noise on every weight matrix, saved as a model directory) is a regression against the base on real
CMMLU questions and alpaca_zh, naming the tasks that dropped; the base evaluated twice is not."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO
from tests.test_gate import cli, evaluate

TASKS = "cmmlu:agronomy,cmmlu:chinese_history,cmmlu:high_school_geography,cmmlu:marketing,cmmlu:nutrition,alpaca_zh"
NOISE = 0.5  # noise std as a share of each weight matrix's own std


def noisy_copy(lm, directory, seed: int = 0):
    import copy

    import torch

    model = copy.deepcopy(lm.model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * parameter.std() * NOISE)
    model.save_pretrained(directory)
    lm.tokenizer.save_pretrained(directory)
    return directory


@pytest.mark.slow
def test_noisy_smollm2_is_a_regression_and_the_base_twice_is_not(tmp_path, smollm2, one_thread):
    store = tmp_path / "store.sqlite"
    noisy = noisy_copy(smollm2, tmp_path / "smollm2-noisy")
    runs = {}
    for name, model in (("base1", "smollm2-135m-instruct"), ("base2", "smollm2-135m-instruct"), ("noisy", noisy)):
        runs[name] = evaluate(model, tmp_path / name, store, limit=10, tasks=TASKS, max_new_tokens=32)

    code, out, err = cli("gate", "--baseline", str(runs["base1"]), "--candidate", str(runs["base2"]))
    assert code == 0, out + err  # no false alarm

    code, out, err = cli("gate", "--baseline", str(runs["base1"]), "--candidate", str(runs["noisy"]),
                         "--verdict", str(tmp_path / "verdict.json"))
    print(out)
    assert code == 1, out + err
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    dropped = {r["task"] for r in verdict["failing"] if r["check"] == "paired" and r["level"] == "overall"}
    assert "alpaca_zh" in dropped
    for row in verdict["failing"]:
        assert row["delta"] < -1 and row["p_adjusted"] < 0.05
        assert f"REGRESSION: {row['task']}" in out
    for row in verdict["rows"]:  # what did not drop significantly is not named
        if row["check"] == "paired" and row["task"] not in dropped and row["level"] == "overall":
            assert row["status"] != "regression"


@pytest.mark.slow
def test_readme_lora_is_better_than_its_base_on_alpaca_zh(tmp_path, one_thread):
    """The README Training section's LoRA (trainers/lora.yaml as it is, 30 steps) against its base on held-out
    alpaca_zh: reported as better, and the gate passes (a real improvement is not a regression)."""
    checkpoint = tmp_path / "smollm2-lora-alpaca-zh"
    code, _, err = cli("train", str(REPO / "trainers" / "lora.yaml"), f"output_dir={checkpoint}", "report_to=none", "--no-store")
    assert code == 0, err
    store = tmp_path / "store.sqlite"
    base = evaluate("smollm2-135m-instruct", tmp_path / "base", store, limit=20, tasks="alpaca_zh", max_new_tokens=64)
    lora = evaluate(checkpoint, tmp_path / "lora", store, limit=20, tasks="alpaca_zh", max_new_tokens=64)
    code, out, err = cli("gate", "--baseline", str(base), "--candidate", str(lora), "--verdict", str(tmp_path / "v.json"))
    print(out)
    assert code == 0, out + err
    [row] = [r for r in json.loads((tmp_path / "v.json").read_text())["rows"]
             if r["check"] == "paired" and r["level"] == "overall" and r["task"] == "alpaca_zh"]
    assert row["status"] == "better" and row["delta"] > 1, row
