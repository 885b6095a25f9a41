"""Data-parallel evaluation: `accelerate launch --multi_gpu --num_processes 2 -m evalkit run ...` (on a CPU-only
machine accelerate starts 2 torchrun processes, gloo) writes one results file whose scores and samples equal a
single-process run's (evalkit/distributed.py). accelerate's `--cpu` alone starts one process (its multi-CPU
path needs mpirun), hence `--multi_gpu`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.test_resume import outputs, stable

REPO = Path(__file__).resolve().parents[1]
TASKS = "cmmlu:agronomy,cmmlu:anatomy,cmmlu:astronomy,mmlu_cloze:anatomy,mmlu_cloze:astronomy,alpaca_zh,perplexity_default"
# what legitimately differs between the two runs: the data_parallel record, per-process timing
LAUNCH_ONLY = {"backend", "generate_s", "tokens_per_s", "processes", "per_process", "batch_size"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def evalkit_run(model: Path, out: Path) -> list[str]:
    return ["-m", "evalkit", "run", "--model", str(model), "--tasks", TASKS, "--limit", "4",
            "--batch-size", "2", "--max-new-tokens", "8", "--output-dir", str(out), "--no-store", "--no-progress"]


def without(value, keys):
    if isinstance(value, dict):
        return {k: without(v, keys) for k, v in value.items() if k not in keys}
    return value


def test_two_processes_equal_one(tmp_path, varied_model_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    single, launched = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, *evalkit_run(varied_model_dir, single)], check=True, env=env, cwd=REPO,
                   capture_output=True, timeout=600)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
              "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    done = subprocess.run([*launch, *evalkit_run(varied_model_dir, launched)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    one, one_samples = outputs(single)
    two, two_samples = outputs(launched)  # exactly one results file: outputs() unpacks a single match
    assert two["backend"]["data_parallel"] == {"world_size": 2, "shard": "subject"}
    assert "data_parallel" not in one["backend"]
    assert without(stable(two), LAUNCH_ONLY) == without(stable(one), LAUNCH_ONLY)
    assert two_samples == one_samples and len(one_samples) == 4  # cmmlu, mmlu_cloze, alpaca_zh, perplexity_default
