"""A checkpoint whose config.json disagrees with its weights stops with one line before anything is allocated
(issue 25 point 12: `num_hidden_layers: 100000` beside real weights printed nothing for 150 s)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from evalkit.errors import EvalkitError
from evalkit.models.loader import load_model
from tests.helpers import run_cli


def edited_copy(source: Path, target: Path, edit) -> Path:
    """The checkpoint with its weights linked and config.json rewritten by ``edit`` (a dict -> text function)."""
    target.mkdir()
    for file in source.iterdir():
        if file.name != "config.json":
            (target / file.name).symlink_to(file)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    text = edit(config)
    (target / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return target


def with_values(**values):
    return lambda config: json.dumps({**config, **values})


CASES = {
    "layers_100000": (with_values(num_hidden_layers=100000), "num_hidden_layers is 100000 but the weights hold"),
    "layers_negative": (with_values(num_hidden_layers=-1), "num_hidden_layers must be a positive integer"),
    "layers_string": (with_values(num_hidden_layers="2"), "num_hidden_layers must be a positive integer"),
    "vocab_mismatch": (lambda c: json.dumps({**c, "vocab_size": c["vocab_size"] * 1000}), "vocab_size is"),
    "hidden_mismatch": (lambda c: json.dumps({**c, "hidden_size": c["hidden_size"] * 64}), "hidden_size is"),
    "not_json": (lambda c: "{not json", "not valid JSON"),
    "list": (lambda c: "[1, 2]", "must be a JSON object"),
    "deep": (lambda c: "[" * 100000 + "]" * 100000, "not valid JSON"),
    "not_utf8": (lambda c: b'{"a": "\xff"}', "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_that_disagrees_with_the_weights_is_one_line(name, tiny_model_dir, tmp_path):
    edit, expected = CASES[name]
    directory = edited_copy(tiny_model_dir, tmp_path / name, edit)
    started = time.perf_counter()
    with pytest.raises(EvalkitError) as caught:
        load_model(str(directory), device="cpu")
    message = str(caught.value)
    assert "\n" not in message and str(directory / "config.json") in message and expected in message
    assert time.perf_counter() - started < 30  # refused from the headers, not after allocating


def test_consistent_copy_still_loads(tiny_model_dir, tmp_path):
    directory = edited_copy(tiny_model_dir, tmp_path / "same", lambda c: json.dumps(c))
    assert load_model(str(directory), device="cpu").model.config.num_hidden_layers >= 1


def test_cli_refuses_the_100000_layer_config(tiny_model_dir, tmp_path, capsys):
    directory = edited_copy(tiny_model_dir, tmp_path / "bad", with_values(num_hidden_layers=100000))
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "run", "--model", str(directory), "--tasks", "cmmlu:agronomy", "--limit", "1",
                             "--output-dir", str(out_dir), "--no-store", "--no-progress")
    assert code == 2 and err.startswith("evalkit: error: ") and err.count("\n") == 1, err
    assert "100000" in err and not out_dir.exists()
