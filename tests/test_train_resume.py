"""A training run killed (SIGKILL) after a checkpoint resumes with ``resume_from_checkpoint=true``:
same final step count, and the loss curve continues from the checkpoint step and matches an
uninterrupted run of the same recipe step for step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evalkit.cli import main
from tests.conftest import REPO
from tests.test_train_methods import write_recipe

STEPS, SAVE_EVERY = 24, 3


def recipe(directory: Path, model_dir: Path, name: str) -> Path:
    # 8 records, batch 2: 4 steps per epoch, so the kill lands mid-epoch and the data order must resume too.
    return write_recipe(directory / name, model_dir, max_samples=8, per_device_train_batch_size=2, cutoff_len=64,
                        max_steps=STEPS, save_steps=SAVE_EVERY, save_total_limit=None, learning_rate=3e-3,
                        output_dir=str(directory / name / "out"))


def curve(output: Path) -> list[tuple[int, float]]:
    manifest = json.loads((output / "train_manifest.json").read_text(encoding="utf-8"))
    return [(p["step"], p["loss"]) for p in manifest["loss_curve"]]


def test_killed_run_resumes_where_it_stopped(tiny_model_dir, tmp_path):
    killed_recipe = recipe(tmp_path, tiny_model_dir, "killed")
    output = tmp_path / "killed" / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "evalkit.cli", "train", str(killed_recipe), "--no-store"],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = output / f"checkpoint-{SAVE_EVERY}" / "train_manifest.json"  # written once the checkpoint is complete
    deadline = time.monotonic() + 600
    while not first.is_file():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (output / "train_manifest.json").exists(), "the run finished before it could be killed"
    saved = sorted(int(p.name.split("-")[1]) for p in output.glob("checkpoint-*")
                   if (p / "train_manifest.json").is_file())
    resumed_from = saved[-1]
    assert resumed_from < STEPS

    assert main(["train", str(killed_recipe), "resume_from_checkpoint=true", "--no-store"]) == 0
    resumed = curve(output)
    manifest = json.loads((output / "train_manifest.json").read_text(encoding="utf-8"))
    assert manifest["global_step"] == STEPS
    assert manifest["resumed_from"] == str(output / f"checkpoint-{resumed_from}")
    assert [step for step, _ in resumed] == list(range(1, STEPS + 1))  # no gap, no repeated step

    straight_recipe = recipe(tmp_path, tiny_model_dir, "straight")
    assert main(["train", str(straight_recipe), "--no-store"]) == 0
    straight = curve(tmp_path / "straight" / "out")
    assert [s for s, _ in straight] == [s for s, _ in resumed]
    # before the kill: the same run; after it: the continuation follows the uninterrupted curve
    assert [loss for _, loss in resumed] == pytest.approx([loss for _, loss in straight], rel=1e-3)
    assert resumed[-1][1] < resumed[0][1]
    assert yaml.safe_load(killed_recipe.read_text())["max_steps"] == STEPS
