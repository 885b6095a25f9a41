"""What `evalkit train` prints: a rounded final loss, tokens/s to three figures, a warm-up longer than the
run capped (and said so), and no third-party noise on stderr. Runs the CLI in a child process, as a
user would, so Python's own warning and logging output reaches stderr (pytest would capture it in-process)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys

import yaml

from tests.conftest import REPO

NOISE = ("gemm_4bit_forward", "No module named 'kernels'", "FutureWarning", "is_gradient_checkpointing")


def test_short_training_run_output(tiny_model_dir, tmp_path):
    recipe = {"model": str(tiny_model_dir), "method": "lora", "dataset": "tasks/data/sft/alpaca_zh_demo.json",
              "dataset_range": [0, 900], "max_samples": 8, "per_device_train_batch_size": 4, "cutoff_len": 128,
              "max_steps": 2, "warmup_steps": 5, "logging_steps": 1, "save_steps": 100, "report_to": "none",
              "output_dir": str(tmp_path / "ckpt")}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    done = subprocess.run([sys.executable, "-m", "evalkit.cli", "train", str(path), "--no-store"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for noise in NOISE:
        assert noise not in done.stderr, f"{noise!r} on stderr:\n{done.stderr}"
    assert "warmup_steps=5 is not below max_steps=2" in done.stderr and "capped to 0 step(s)" in done.stderr
    manifest = json.loads((tmp_path / "ckpt" / "train_manifest.json").read_text())
    assert manifest["recipe"]["warmup_steps"] == 0  # the manifest records the warm-up actually used
    loss = re.search(r"final loss (\S+),", done.stdout).group(1)
    assert re.fullmatch(r"\d+\.\d{4}", loss) and float(loss) == round(manifest["final_loss"], 4)
    rate = re.search(r"train ([\d,.]+) tok/s", done.stdout).group(1)
    digits = rate.replace(",", "").replace(".", "").lstrip("0")
    assert len(digits) >= 3 or float(rate.replace(",", "")) >= 100, rate  # three significant figures


def test_bitsandbytes_kernels_notice_is_silenced():
    """The notice only appears on CPUs with AVX512-BF16, so check its logger directly as well."""
    from evalkit.train.runner import quiet_third_party

    quiet_third_party()
    assert not logging.getLogger("bitsandbytes.backends.cpu.ops").isEnabledFor(logging.WARNING)


def test_rate_text_keeps_three_figures():
    from evalkit.profile.profiler import rate_text

    assert [rate_text(x) for x in (1.234, 12.34, 123.4, 12345.6)] == ["1.23", "12.3", "123", "12,346"]
