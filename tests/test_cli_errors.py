"""Every bad input: one clear line naming the file/row and the fix, exit code 2, no traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO, build_tiny_model
from tests.helpers import run_cli, spec_copy

CMMLU_HEADER = ",Question,A,B,C,D,Answer\n"


def cmmlu_data(tmp_path, test_rows: str, dev_rows: str = "0,问题,甲,乙,丙,丁,A\n"):
    data = tmp_path / "data"
    (data / "test").mkdir(parents=True)
    (data / "dev").mkdir()
    (data / "test" / "agronomy.csv").write_text(CMMLU_HEADER + test_rows, encoding="utf-8")
    (data / "dev" / "agronomy.csv").write_text(CMMLU_HEADER + dev_rows, encoding="utf-8")
    return spec_copy("cmmlu", tmp_path, data, ["agronomy"])


def expect_error(capsys, tiny_model_dir, tmp_path, tasks: str, *needles: str, extra=(), model=None):
    capsys.readouterr()  # drop what fixtures printed
    code, out, err = run_cli(capsys, "run", "--model", str(model or tiny_model_dir), "--tasks", tasks,
                             "--output-dir", str(tmp_path / "out"), "--no-progress", *extra)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evalkit: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_unknown_task(capsys, tiny_model_dir, tmp_path):
    expect_error(capsys, tiny_model_dir, tmp_path, "mmlu_pro", "unknown task 'mmlu_pro'", "cmmlu")


def test_unknown_subject(capsys, tiny_model_dir, tmp_path):
    expect_error(capsys, tiny_model_dir, tmp_path, "cmmlu:astrology", "unknown subject 'astrology'", "evalkit tasks cmmlu")


def test_missing_data_file(capsys, tiny_model_dir, tmp_path):
    spec = spec_copy("cmmlu", tmp_path, tmp_path / "nowhere", ["agronomy"])
    expect_error(capsys, tiny_model_dir, tmp_path, str(spec), "nowhere/test/agronomy.csv", "missing data file")


def test_malformed_row(capsys, tiny_model_dir, tmp_path):
    spec = cmmlu_data(tmp_path, "0,问题,甲,乙,丙,丁,A\n1,问题,甲,乙,B\n")
    expect_error(capsys, tiny_model_dir, tmp_path, str(spec), "agronomy.csv:3", "expected 7 fields, found 5")


def test_broken_quoting(capsys, tiny_model_dir, tmp_path):
    spec = cmmlu_data(tmp_path, '0,"问题,甲,乙,丙,丁,A\n')
    expect_error(capsys, tiny_model_dir, tmp_path, str(spec), "agronomy.csv", "malformed CSV")


def test_missing_column(capsys, tiny_model_dir, tmp_path):
    spec = cmmlu_data(tmp_path, "")
    (tmp_path / "data" / "test" / "agronomy.csv").write_text(",Question,A,B,C,D\n0,问题,甲,乙,丙,丁\n", encoding="utf-8")
    expect_error(capsys, tiny_model_dir, tmp_path, str(spec), "missing column(s) Answer")


def test_answer_outside_a_to_d(capsys, tiny_model_dir, tmp_path):
    spec = cmmlu_data(tmp_path, "0,问题,甲,乙,丙,丁,A\n1,问题,甲,乙,丙,丁,E\n")
    expect_error(capsys, tiny_model_dir, tmp_path, str(spec), "agronomy.csv:3", "answer 'E' is not one of A, B, C, D")


def test_empty_split(capsys, tiny_model_dir, tmp_path):
    spec = cmmlu_data(tmp_path, "")
    expect_error(capsys, tiny_model_dir, tmp_path, str(spec), "test/agronomy.csv", "has no questions")


def test_too_few_exemplars(capsys, tiny_model_dir, tmp_path):
    spec = cmmlu_data(tmp_path, "0,问题,甲,乙,丙,丁,A\n")
    expect_error(capsys, tiny_model_dir, tmp_path, str(spec), "dev/agronomy.csv", "lower --num-fewshot",
                 extra=("--num-fewshot", "3"))


def test_model_path_does_not_exist(capsys, tiny_model_dir, tmp_path):
    expect_error(capsys, tiny_model_dir, tmp_path, "cmmlu:agronomy", "does not exist", model="./no/such/checkpoint")


def test_directory_that_is_not_a_model(capsys, tiny_model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    expect_error(capsys, tiny_model_dir, tmp_path, "cmmlu:agronomy", "not a model", model=tmp_path / "empty")


def test_hub_id_offline(capsys, tiny_model_dir, tmp_path):
    expect_error(capsys, tiny_model_dir, tmp_path, "cmmlu:agronomy", "org/missing-model", "hub",
                 model="org/missing-model")


def test_corrupt_safetensors(capsys, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    expect_error(capsys, tiny_model_dir, tmp_path, "cmmlu:agronomy", "model.safetensors", "corrupt or truncated",
                 model=broken)


def test_prompt_longer_than_context(capsys, tmp_path):
    short = build_tiny_model(tmp_path / "short-context", context=64)
    line = expect_error(capsys, short, tmp_path, "cmmlu:agronomy", "longer than the model's context of 64 tokens",
                        "--truncation left", extra=("--limit", "3", "--num-fewshot", "2"), model=short)
    assert "3 of 3 prompts" in line


def test_truncation_left_says_how_many(capsys, tmp_path):
    short = build_tiny_model(tmp_path / "short-context", context=64)
    code, out, err = run_cli(capsys, "run", "--model", str(short), "--tasks", "cmmlu:agronomy", "--limit", "3",
                             "--num-fewshot", "2", "--truncation", "left", "--output-dir", str(tmp_path / "out"),
                             "--no-progress")
    assert code == 0, err
    assert "3 of 3 prompts of cmmlu were longer than the context (64 tokens)" in err
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    assert results["tasks"]["cmmlu"]["n_truncated"] == 3


def test_results_never_overwritten(tmp_path):
    from evalkit.errors import EvalkitError
    from evalkit.results import RunOutput

    output = RunOutput(tmp_path, "m", stamp="fixed")
    output.check_writable()
    output.write_results({"first": True})
    with pytest.raises(EvalkitError, match="already exists"):
        RunOutput(tmp_path, "m", stamp="fixed").check_writable()
    with pytest.raises(EvalkitError, match="never overwritten"):
        output.write_results({"second": True})
    assert json.loads(output.results_path.read_text()) == {"first": True}


def test_bad_spec_yaml(capsys, tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n", encoding="utf-8")
    expect_error(capsys, tiny_model_dir, tmp_path, str(bad), "bad.yaml", "not valid YAML")


def test_repo_specs_parse():
    from evalkit.tasks import available_tasks, load_spec

    specs = {name: load_spec(path) for name, path in available_tasks().items()}
    assert len(specs["mmlu"].subjects) == 57
    assert len(specs["cmmlu"].subjects) == 67
    assert len(specs["ceval"].subjects) == 52
    assert (REPO / "tasks" / "data" / "PROVENANCE.md").is_file()
