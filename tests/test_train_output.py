"""What `evalkit train` prints: a summary block before the first step, a final line with the run's mean
train loss and last validation loss, tokens/s to three figures, a warm-up longer than the run capped (and
said so), a warning when eval_steps lies beyond the run, the recipe options in --help, and no third-party
noise on stderr. Runs the CLI in a child process, as a
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
    # 10 records, 2 held out; eval_steps (default: save_steps=100) lies beyond the 3 steps, eval_at_end asks anyway
    recipe = {"model": str(tiny_model_dir), "method": "lora", "dataset": "tasks/data/sft/alpaca_zh_demo.json",
              "dataset_range": [0, 900], "max_samples": 10, "val_size": 2, "per_device_train_batch_size": 2,
              "gradient_accumulation_steps": 2, "cutoff_len": 128, "max_steps": 3, "warmup_steps": 5,
              "logging_steps": 1, "save_steps": 100, "eval_at_end": True, "report_to": "none",
              "output_dir": str(tmp_path / "ckpt")}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    done = subprocess.run([sys.executable, "-m", "evalkit.cli", "train", str(path), "--no-store"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for noise in NOISE:
        assert noise not in done.stderr, f"{noise!r} on stderr:\n{done.stderr}"
    assert "warmup_steps=5 is not below max_steps=3" in done.stderr and "capped to 0 step(s)" in done.stderr
    assert "eval_steps=100 is beyond the run's 3 step(s): validating once, after the last step" in done.stderr
    manifest = json.loads((tmp_path / "ckpt" / "train_manifest.json").read_text())
    assert manifest["recipe"]["warmup_steps"] == 0  # the manifest records the warm-up actually used

    summary = done.stdout[done.stdout.index("evalkit train\n"):]
    assert f"parameters {manifest['trainable_parameters']:,} trainable of {manifest['total_parameters']:,}" in \
        " ".join(summary.split())
    assert re.search(r"data +8 train / 2 validation records", summary)
    assert re.search(r"batch +4 per step \(2 per device x 2 accumulation x 1 process\(es\)\)", summary)
    assert re.search(r"steps +3 \(max_steps\), validation every 100", summary)
    assert re.search(rf"output +{re.escape(str((tmp_path / 'ckpt').resolve()))}", summary)
    assert done.stdout.index("evalkit train\n") < done.stdout.index("checkpoint:")  # printed before training output

    final = done.stdout.strip().splitlines()[-1]
    found = re.search(r": 3 steps, mean train loss (\S+), last validation loss (\S+) \(step 3\),", final)
    assert found, final
    mean_loss, val_loss = found.groups()
    assert re.fullmatch(r"\d+\.\d{4}", mean_loss) and float(mean_loss) == round(manifest["train_loss"], 4)
    curve = [e["loss"] for e in manifest["loss_curve"]]
    assert len(curve) == 3 and abs(manifest["train_loss"] - sum(curve) / 3) < 1e-3  # the mean, not the last batch
    assert float(val_loss) == round(manifest["final_eval_loss"], 4) and manifest["eval_curve"][-1]["step"] == 3
    rate = re.search(r"train ([\d,.]+) tok/s", done.stdout).group(1)
    digits = rate.replace(",", "").replace(".", "").lstrip("0")
    assert len(digits) >= 3 or float(rate.replace(",", "")) >= 100, rate  # three significant figures


def test_validation_beyond_the_run_is_explained():
    from evalkit.train.callbacks import validation_notice
    from evalkit.train.recipe import recipe_from_dict

    def notice(validation_samples=20, steps=3, **options):
        return validation_notice(recipe_from_dict({"model": "unused", **options}), validation_samples, steps)

    assert notice(val_size=20, eval_steps=30) == ("evalkit: warning: eval_steps=30 is beyond the run's 3 step(s): the "
                                                  "20 validation records are never evaluated; set eval_at_end=true "
                                                  "or eval_steps=3")
    assert "validating once, after the last step" in notice(val_size=20, eval_steps=30, eval_at_end=True)
    assert "holds out no records" in notice(0, val_size=0.01)
    assert notice(val_size=20, eval_steps=3) is None and notice(val_size=0, eval_steps=30) is None


def test_help_lists_recipe_options_with_defaults(capsys):
    import dataclasses

    import pytest

    from evalkit.cli import main
    from evalkit.train.recipe import Recipe

    with pytest.raises(SystemExit) as exited:
        main(["train", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("model=smollm2-135m-instruct", "learning_rate=0.0001", "max_steps=-1", "seed=42",
                   "lora_target=all", "eval_at_end=false", "max_samples=null"):
        assert re.search(rf"^  {re.escape(option)}(\s|$)", out, re.M), option
    names = [f.name for f in dataclasses.fields(Recipe) if f.name != "extra"]
    assert all(re.search(rf"^  {name}=", out, re.M) for name in names)
    assert "extra=" not in out


def test_bitsandbytes_kernels_notice_is_silenced():
    """The notice only appears on CPUs with AVX512-BF16, so check its logger directly as well."""
    from evalkit.train.runner import quiet_third_party

    quiet_third_party()
    assert not logging.getLogger("bitsandbytes.backends.cpu.ops").isEnabledFor(logging.WARNING)


def test_rate_text_keeps_three_figures():
    from evalkit.profile.profiler import rate_text

    assert [rate_text(x) for x in (1.234, 12.34, 123.4, 12345.6)] == ["1.23", "12.3", "123", "12,346"]
