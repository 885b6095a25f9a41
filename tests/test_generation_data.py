"""Generation task data: specs over any JSON/JSONL/CSV, fixed slices, and one-line errors (exit 2)."""

from __future__ import annotations

import json

import pytest
import yaml

from evalkit.tasks import resolve_tasks
from evalkit.tasks.generation_data import load_samples
from tests.conftest import REPO
from tests.helpers import run_cli


def write_spec(directory, data: dict, **extra) -> str:
    raw = {"task": "mytask", "type": "generation", "language": "en", "data": data, "max_new_tokens": 4, **extra}
    path = directory / "mytask.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return str(path)


def samples_of(spec_path: str, limit=None):
    (selection,) = resolve_tasks(spec_path)
    return load_samples(selection.spec, limit)


def test_alpaca_slices_are_the_held_out_rows():
    source = {"zh": json.loads((REPO / "tasks/data/sft/alpaca_zh_demo.json").read_text(encoding="utf-8")),
              "en": json.loads((REPO / "tasks/data/sft/alpaca_en_demo.json").read_text(encoding="utf-8"))}
    for lang, count in (("zh", 100), ("en", 99)):
        data = samples_of(f"alpaca_{lang}")
        assert [s.index for s in data.samples] == list(range(900, 900 + count))
        for sample in data.samples:
            row = source[lang][sample.index]
            expected = row["instruction"] + ("\n" + row["input"] if row["input"] else "")
            assert sample.input == expected and sample.reference == row["output"]
        limited = samples_of(f"alpaca_{lang}", limit=5)
        assert limited.samples == data.samples[:5]
        assert limited.data_sha256 == data.data_sha256 and limited.samples_sha256() != data.samples_sha256()


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_any_file_with_input_and_reference_columns(tmp_path, fmt):
    rows = [{"question": f"q{i}", "context": "" if i % 2 else f"c{i}", "answer": f"a{i}"} for i in range(6)]
    file = tmp_path / f"data.{fmt}"
    if fmt == "json":
        file.write_text(json.dumps(rows), encoding="utf-8")
    elif fmt == "jsonl":
        file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        file.write_text("question,context,answer\n" + "".join(f"{r['question']},{r['context']},{r['answer']}\n" for r in rows),
                        encoding="utf-8")
    spec = write_spec(tmp_path, {"path": file.name, "input": ["question", "context"], "reference": "answer",
                                 "slice": [2, 5]}, instruction="Answer: ")
    data = samples_of(spec)
    assert [(s.index, s.input, s.reference) for s in data.samples] == [(2, "q2\nc2", "a2"), (3, "q3", "a3"), (4, "q4\nc4", "a4")]
    assert data.source == str(file)


def test_hub_route_reads_through_datasets(tmp_path):
    """``data.hub`` goes through datasets.load_dataset; a dataset folder next to the spec works offline."""
    rows = [{"document": f"article {i}", "summary": f"summary {i}"} for i in range(5)]
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = write_spec(tmp_path, {"input": "document", "reference": "summary", "slice": [1, 4],
                                 "hub": {"path": "saved", "split": "test"}})
    data = samples_of(spec)
    assert [(s.index, s.input, s.reference) for s in data.samples] == [(i, f"article {i}", f"summary {i}") for i in (1, 2, 3)]
    assert data.source == "hub:saved (test)" and data.data_sha256 is None


def expect_error(capsys, tmp_path, tasks: str, *needles: str) -> str:
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "run", "--model", "smollm2-135m-instruct", "--tasks", tasks,
                             "--output-dir", str(out_dir), "--no-progress")
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evalkit: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out_dir.exists() or not any(out_dir.rglob("*.json*")), "nothing may be written on an error"
    return lines[0]


def test_jsonl_row_that_is_not_json(capsys, tmp_path):
    (tmp_path / "d.jsonl").write_text('{"i": "a", "o": "b"}\n{"i": "a", "o": \n{"i": "c", "o": "d"}\n', encoding="utf-8")
    spec = write_spec(tmp_path, {"path": "d.jsonl", "input": "i", "reference": "o"})
    expect_error(capsys, tmp_path, spec, "d.jsonl row 1 (line 2): not valid JSON")


def test_json_file_that_is_not_json(capsys, tmp_path):
    (tmp_path / "d.json").write_text('[{"i": "a", "o": "b"},\n {"i": "a" "o": "x"}]', encoding="utf-8")
    spec = write_spec(tmp_path, {"path": "d.json", "input": "i", "reference": "o"})
    expect_error(capsys, tmp_path, spec, "d.json: not valid JSON", "line 2")


def test_missing_column(capsys, tmp_path):
    (tmp_path / "d.json").write_text(json.dumps([{"i": "a", "o": "b"}, {"i": "c", "out": "d"}]), encoding="utf-8")
    spec = write_spec(tmp_path, {"path": "d.json", "input": "i", "reference": "o"})
    expect_error(capsys, tmp_path, spec, "d.json row 1", "no column 'o'", "columns: i, out")


def test_missing_csv_column(capsys, tmp_path):
    (tmp_path / "d.csv").write_text("i,ref\na,b\n", encoding="utf-8")
    spec = write_spec(tmp_path, {"path": "d.csv", "input": "i", "reference": "o"})
    expect_error(capsys, tmp_path, spec, "d.csv row 0 (line 2)", "no column 'o'")


def test_empty_reference(capsys, tmp_path):
    rows = [{"i": "a", "o": "b"}, {"i": "c", "o": "d"}, {"i": "e", "o": "  "}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = write_spec(tmp_path, {"path": "d.jsonl", "input": "i", "reference": "o"})
    expect_error(capsys, tmp_path, spec, "d.jsonl row 2 (line 3): empty reference in column 'o'")


def test_errors_leave_earlier_results_alone(capsys, tmp_path):
    out_dir = tmp_path / "out" / "smollm2-135m-instruct"
    out_dir.mkdir(parents=True)
    earlier = out_dir / "results_20260101T000000000000Z.json"
    earlier.write_text('{"kept": true}', encoding="utf-8")
    (tmp_path / "d.jsonl").write_text('{"i": "a"}\n', encoding="utf-8")
    spec = write_spec(tmp_path, {"path": "d.jsonl", "input": "i", "reference": "o"})
    code, _, err = run_cli(capsys, "run", "--model", "smollm2-135m-instruct", "--tasks", spec,
                           "--output-dir", str(tmp_path / "out"), "--no-progress")
    assert code == 2 and "no column 'o'" in err
    assert sorted(p.name for p in out_dir.iterdir()) == [earlier.name] and json.loads(earlier.read_text()) == {"kept": True}


@pytest.mark.parametrize("task", ["xsum", "cnn_dailymail"])  # adgen is vendored (tests/test_ceval_adgen.py)
def test_hub_tasks_offline_say_so_in_one_line(capsys, tmp_path, task):
    expect_error(capsys, tmp_path, task, f"{task}: data is not available offline", "HF_HUB_OFFLINE")


@pytest.mark.parametrize("data, needle", [
    ({"path": "d.json", "reference": "o"}, "data needs input"),
    ({"path": "d.txt", "input": "i", "reference": "o"}, "data.format 'txt'"),
    ({"path": "d.json", "input": "i", "reference": "o", "slice": [5, 2]}, "data.slice"),
    ({"input": "i", "reference": "o"}, "needs a 'path'"),
])
def test_bad_specs(capsys, tmp_path, data, needle):
    spec = write_spec(tmp_path, data)
    expect_error(capsys, tmp_path, spec, "mytask.yaml", needle)


def test_slice_past_the_end(capsys, tmp_path):
    (tmp_path / "d.json").write_text(json.dumps([{"i": "a", "o": "b"}]), encoding="utf-8")
    spec = write_spec(tmp_path, {"path": "d.json", "input": "i", "reference": "o", "slice": [3, None]})
    expect_error(capsys, tmp_path, spec, "selects no rows", "has 1")
