"""DDP training: `accelerate launch --config_file trainers/accelerate/ddp.yaml -m evalkit.cli train ...` with 2 CPU
processes (gloo) trains 5 steps on the tiny model, writes one checkpoint, and the checkpoint evaluates."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from evalkit.cli import main
from tests.conftest import REPO
from tests.test_distributed_eval import free_port
from tests.test_train_methods import write_recipe


def test_ddp_two_processes_train_and_evaluate(tmp_path, tiny_model_dir):
    # 8 records, 2 per process per step: 2 processes cover an epoch in 2 steps (1 process would take 4)
    recipe = write_recipe(tmp_path, tiny_model_dir, max_samples=8, per_device_train_batch_size=2, max_steps=5,
                          save_steps=5, cutoff_len=64)
    output = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "trainers/accelerate/ddp.yaml",
              "--main_process_port", str(free_port())]
    done = subprocess.run([*launch, "-m", "evalkit.cli", "train", str(recipe), "--no-store"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    state = json.loads((output / "checkpoint-5" / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 5
    assert state["epoch"] == 2.5  # 2 steps per epoch: the data really was split over 2 processes
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-5"]
    manifest = json.loads((output / "train_manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["loss_curve"]) == 5
    assert main(["run", "--model", str(output), "--tasks", "cmmlu:agronomy", "--limit", "2", "--output-dir",
                 str(tmp_path / "results"), "--no-store", "--no-progress"]) == 0
