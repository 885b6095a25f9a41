"""Bad training input: one ``evalkit: error:`` line naming the problem and the fix, exit 2, and
nothing written (or overwritten) in the output directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from evalkit.train.recipe import load_recipe
from tests.conftest import REPO
from tests.helpers import run_cli
from tests.test_train_methods import train, write_recipe


def fails(capsys, recipe: Path, *overrides: str) -> str:
    code, out, err = run_cli(capsys, "train", str(recipe), *overrides, "--no-store")
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("evalkit: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_unknown_method(capsys, tmp_path, tiny_model_dir):
    line = fails(capsys, write_recipe(tmp_path, tiny_model_dir, method="lokr"))
    assert "unknown method 'lokr'" in line and "lora" in line and "galore" in line
    assert not (tmp_path / "out").exists()


def test_target_module_missing_from_the_model(capsys, tmp_path, tiny_model_dir):
    line = fails(capsys, write_recipe(tmp_path, tiny_model_dir, lora_target=["q_proj", "query_key_value"]))
    assert "lora_target: module query_key_value does not exist in the model" in line
    assert "q_proj" in line.split("use all or some of")[1]  # names what does exist
    assert not (tmp_path / "out").exists()


def test_freeze_module_missing_from_the_model(capsys, tmp_path, tiny_model_dir):
    line = fails(capsys, write_recipe(tmp_path, tiny_model_dir, method="freeze", freeze_trainable_modules=["attention"]))
    assert "freeze_trainable_modules: module attention does not exist" in line


def test_dataset_missing_its_columns(capsys, tmp_path, tiny_model_dir):
    data = tmp_path / "broken.json"
    data.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "c", "answer": "d"}]), encoding="utf-8")
    line = fails(capsys, write_recipe(tmp_path, tiny_model_dir, dataset=str(data), dataset_range=None))
    assert f"{data}: record 1 has no output column" in line and "instruction, output" in line
    assert not (tmp_path / "out").exists()


def test_pairwise_dataset_for_sft_and_text_for_dpo(capsys, tmp_path, tiny_model_dir):
    line = fails(capsys, write_recipe(tmp_path, tiny_model_dir, dataset="tasks/data/sft/dpo_en_demo.json", dataset_range=None))
    assert "stage sft needs alpaca or sharegpt data, this file is pairwise" in line
    line = fails(capsys, write_recipe(tmp_path, tiny_model_dir, stage="dpo", dataset="tasks/data/sft/wiki_demo.txt",
                                      dataset_range=None))
    assert "stage dpo needs pairwise data, this file is text" in line


def test_dataset_that_does_not_exist(capsys, tmp_path, tiny_model_dir):
    line = fails(capsys, write_recipe(tmp_path, tiny_model_dir, dataset="data/nowhere.json"))
    assert "dataset data/nowhere.json does not exist" in line


def test_four_bit_recipe_without_bitsandbytes(capsys, tmp_path, tiny_model_dir, monkeypatch):
    # bitsandbytes is installed here; a None entry in sys.modules makes `import bitsandbytes` raise
    # ImportError exactly as on a machine without it.
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    line = fails(capsys, write_recipe(tmp_path, tiny_model_dir, method="qlora", quantization_bit=4))
    assert "method qlora (4-bit) needs bitsandbytes: pip install 'bitsandbytes>=0.50'" in line
    assert not (tmp_path / "out").exists()


def test_quantization_bit_on_a_method_other_than_qlora(capsys, tmp_path, tiny_model_dir):
    line = fails(capsys, write_recipe(tmp_path, tiny_model_dir, method="lora", quantization_bit=4))
    assert "quantization_bit is for method qlora, not lora" in line


def test_recipe_errors(capsys, tmp_path, tiny_model_dir):
    assert "unknown option(s) lora_rnak" in fails(capsys, write_recipe(tmp_path, tiny_model_dir, lora_rnak=8))
    assert "lora_rank='eight' should be int" in fails(capsys, write_recipe(tmp_path, tiny_model_dir), "lora_rank=eight")
    assert "override 'max_steps' is not key=value" in fails(capsys, write_recipe(tmp_path, tiny_model_dir), "max_steps")
    assert "recipe nowhere.yaml does not exist" in fails(capsys, Path("nowhere.yaml"))


def test_finished_checkpoint_is_never_overwritten(capsys, tmp_path, tiny_model_dir):
    output, _ = train(tmp_path, tiny_model_dir, max_steps=1)
    before = {p.name: p.stat().st_mtime_ns for p in output.iterdir()}
    capsys.readouterr()  # drop the first run's progress bars
    line = fails(capsys, tmp_path / "recipe.yaml")
    assert "already holds a finished checkpoint; choose another output_dir" in line
    assert {p.name: p.stat().st_mtime_ns for p in output.iterdir()} == before


def test_resume_without_a_checkpoint(capsys, tmp_path, tiny_model_dir):
    line = fails(capsys, write_recipe(tmp_path, tiny_model_dir), "resume_from_checkpoint=true")
    assert "has no checkpoint-N directory to resume from" in line


@pytest.mark.parametrize("recipe", sorted((REPO / "trainers").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_recipes_are_valid(recipe):
    """Every recipe in trainers/ parses, names a known method and existing data, and targets smollm2."""
    from evalkit.train.data import resolve_dataset_path
    from evalkit.train.methods import get_method

    loaded = load_recipe(recipe)
    get_method(loaded.method)
    assert loaded.model == "smollm2-135m-instruct"
    assert resolve_dataset_path(loaded.dataset) is not None
    assert loaded.output_dir.startswith("checkpoints/")
