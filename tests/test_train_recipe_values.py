"""Recipe values and ``key=value`` overrides are checked before the model loads: each bad value is one
``evalkit: error:`` line naming the option and the fix, exit 2, no traceback, and no output directory."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli

LONG_NUMBER = "1" + "0" * 400  # overflows a float
BAD_OVERRIDES = [
    (["max_steps=[1"], "override max_steps=[1: not valid YAML"),
    (["learning_rate=.nan"], "learning_rate=nan is not a finite number"),
    (["learning_rate=" + LONG_NUMBER], "is not a finite number"),
    (["val_size=.inf"], "val_size=inf is not a finite number"),
    (["lr_scheduler_type=bogus"], "unknown lr_scheduler_type 'bogus'; use one of linear, cosine,"),
    (["report_to=wandb_nope"], "report_to='wandb_nope' is not available; use one of none"),
    (["seed=12345678901234567890123"], "seed=12345678901234567890123 must be in 0..4294967295"),
    (["seed=-1"], "seed=-1 must be in 0..4294967295"),
    (["num_train_epochs=-1", "max_steps=-1"], "num_train_epochs=-1 must not be negative"),
    (["num_train_epochs=0", "max_steps=-1"], "num_train_epochs=0 with max_steps=-1 trains nothing"),
    (["max_steps=0"], "max_steps=0 must be -1 (train num_train_epochs) or at least 1"),
    (["max_steps=-7"], "max_steps=-7 must be -1"),
    (["val_size=-5"], "val_size=-5 must not be negative"),
    (["val_size=2.5"], "val_size=2.5 must be a fraction below 1 or a whole count"),
    (["warmup_steps=-1"], "warmup_steps=-1 must not be negative"),
    (["lora_rank=" + "9" * 23], "lora_rank=" + "9" * 23 + " is out of range"),
    (["system=" + "x" * 5000], "system is 5000 characters long, more than 4096"),
    (["lora_target=[q_proj, 3]"], "lora_target: item 3 should be str"),
    (["dataset_range=[5, 2]"], "dataset_range must be [start, end] with 0 <= start < end"),
    (["save_total_limit=0"], "save_total_limit=0 must be at least 1"),
    (["lora_rnak=4"], "unknown option(s) lora_rnak (did you mean lora_rank?); known options: model, method,"),
    (["lora_rank=*x"], "override lora_rank=*x: not valid YAML"),
    (["lora_rank=[1\n2"], "override lora_rank=[1\\n2: not valid YAML"),  # a newline typed stays on one line
    (["bad\nkey=1"], "unknown option(s) 'bad\\nkey'"),
]


def check_refused(capsys, recipe: str, overrides: list[str], expected: str, output) -> None:
    code, _, err = run_cli(capsys, "train", recipe, *overrides, f"output_dir={output}", "--no-store")
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("evalkit: error: "), err
    assert "Traceback" not in err
    assert expected in lines[0], lines[0]
    assert not output.exists()


@pytest.mark.parametrize(("overrides", "expected"), BAD_OVERRIDES, ids=lambda v: str(v)[:40])
def test_bad_override_is_refused_before_anything_runs(capsys, tmp_path, overrides, expected):
    check_refused(capsys, "trainers/lora.yaml", overrides, expected, tmp_path / "out")


@pytest.mark.parametrize(("text", "expected"), [
    ("learning_rate: .nan\n", "learning_rate=nan is not a finite number"),
    ("max_steps: [1\n", "recipe.yaml: not valid YAML"),
    ("report_to: wandb_nope\n", "report_to='wandb_nope' is not available"),
    ("1: 2\n", "unknown option(s) 1"),
], ids=["nan", "syntax", "report_to", "int-key"])
def test_bad_recipe_file_is_refused(capsys, tmp_path, text, expected):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text, encoding="utf-8")
    check_refused(capsys, str(recipe), [], expected, tmp_path / "out")


def test_existing_output_dir_is_left_alone(capsys, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("mine", encoding="utf-8")
    code, _, err = run_cli(capsys, "train", "trainers/lora.yaml", "learning_rate=.nan", f"output_dir={output}", "--no-store")
    assert code == 2 and "learning_rate=nan" in err
    assert [p.name for p in output.iterdir()] == ["notes.txt"]


def test_good_overrides_are_kept():
    from evalkit.train.recipe import load_recipe

    recipe = load_recipe("trainers/lora.yaml", ["max_steps=3", "lora_target=[q_proj, v_proj]", "seed=4294967295",
                                                "report_to=none", "lr_scheduler_type=linear", "val_size=0.1"])
    assert (recipe.max_steps, recipe.lora_target, recipe.seed) == (3, ["q_proj", "v_proj"], 2**32 - 1)
    assert (recipe.report_to, recipe.lr_scheduler_type, recipe.val_size) == ("none", "linear", 0.1)


@pytest.mark.parametrize("value", ["{a: b}", "{instruction: [1]}", "{output: ''}"])
def test_dataset_columns_must_map_a_format_column_to_a_key(tmp_path, capsys, value):
    code, _, err = run_cli(capsys, "train", "trainers/gsm8k_lora.yaml", f"dataset_columns={value}",
                           f"output_dir={tmp_path / 'out'}")
    assert code == 2 and "dataset_columns maps" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_exponent_floats_without_a_dot_are_numbers():
    """YAML 1.1 reads 1e-4 as a string; LLaMA-Factory recipes and users write it so."""
    from evalkit.train.recipe import load_recipe

    assert load_recipe("trainers/lora.yaml", ["learning_rate=1e-4"]).learning_rate == 1e-4
