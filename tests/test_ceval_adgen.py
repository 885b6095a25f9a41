"""C-Eval and AdGen from the vendored files (tasks/data/ceval, tasks/data/adgen): offline, categories as
C-Eval's own map, test-set predictions in the leaderboard's format."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from evalkit.evaluators.base import RunConfig
from evalkit.tasks import resolve_tasks
from evalkit.tasks.generation_data import load_samples
from evalkit.tasks.mc_data import load_split
from tests.conftest import REPO
from tests.helpers import run_cli

CEVAL = REPO / "tasks" / "data" / "ceval"


def csv_rows(split: str, subject: str) -> list[dict]:
    """The file read with the csv module alone, independently of evalkit's reader."""
    with open(CEVAL / split / f"{subject}_{split}.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def ceval_spec():
    (selection,) = resolve_tasks("ceval")
    return selection.spec


def test_ceval_categories_are_the_vendored_map():
    """Subjects, Chinese names and categories of tasks/ceval.yaml are those of subject_mapping.json, whose
    only gap (clinical_medicine has no category upstream) is Other, as in the C-Eval paper: 20/10/11/11."""
    spec = ceval_spec()
    mapping = json.loads((CEVAL / "subject_mapping.json").read_text(encoding="utf-8"))
    assert list(spec.subjects) == list(mapping)
    for key, entry in mapping.items():
        category = entry[2] if len(entry) > 2 else "Other"
        assert spec.subjects[key].name == entry[1] and spec.subjects[key].categories == (category,), key
    per_category = Counter(c for s in spec.subjects.values() for c in s.categories)
    assert per_category == {"STEM": 20, "Social Science": 10, "Humanities": 11, "Other": 11}
    assert list(spec.categories) == ["STEM", "Social Science", "Humanities", "Other"]
    assert sorted(p.name for p in (CEVAL / "val").iterdir()) == sorted(f"{k}_val.csv" for k in mapping)


def test_ceval_question_counts_from_the_files():
    """What the evaluator prepares is every row of every file: val 1,346 (per category as the files say),
    dev 5 per subject (the fixed 5-shot prefix is its first rows), test 12,342 without answers."""
    from evalkit.evaluators.multiple_choice import MultipleChoiceEvaluator

    (selection,) = resolve_tasks("ceval")
    prepared = MultipleChoiceEvaluator().prepare(selection, RunConfig(num_fewshot=5))
    assert prepared.split == "val" and len(prepared.subjects) == 52
    per_category: Counter = Counter()
    for subject in prepared.subjects:
        rows = csv_rows("val", subject.key)
        assert [(q.id, q.question, q.answer) for q in subject.questions] == [
            (r["id"], r["question"], r["answer"]) for r in rows]
        assert [q.question for q in subject.exemplars] == [r["question"] for r in csv_rows("dev", subject.key)][:5]
        per_category[selection.spec.subjects[subject.key].categories[0]] += len(rows)
    assert sum(len(s.questions) for s in prepared.subjects) == 1346 == sum(per_category.values())
    expected = Counter()
    for key, entry in json.loads((CEVAL / "subject_mapping.json").read_text(encoding="utf-8")).items():
        with open(CEVAL / "val" / f"{key}_val.csv", newline="", encoding="utf-8") as handle:
            expected[entry[2] if len(entry) > 2 else "Other"] += sum(1 for _ in csv.DictReader(handle))
    assert per_category == expected

    test = [q for key in selection.spec.subjects for q in load_split(selection.spec, key, "test")]
    assert len(test) == 12342 and all(q.answer is None for q in test)


def test_ceval_val_run_reports_every_category(capsys, tiny_model_dir, tmp_path, one_thread):
    """One question per subject: the table has the four categories and the average over 52 subjects.
    (--truncation left: a few C-Eval questions are longer than the tiny model's 512-token context.)"""
    code, out, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--tasks", "ceval", "--limit", "1", "--truncation", "left",
                             "--output-dir", str(tmp_path), "--no-progress")
    assert code == 0, err
    result = json.loads(next(tmp_path.rglob("results_*.json")).read_text())["tasks"]["ceval"]
    assert {c: b["n"] for c, b in result["categories"].items()} == {"STEM": 20, "Social Science": 10,
                                                                     "Humanities": 11, "Other": 11}
    assert result["split"] == "val" and result["macro"]["groups"] == 52
    assert "Average (macro, 52 subjects)" in out and "[Other]" in out


def test_ceval_test_predictions_one_letter_per_id(capsys, tiny_model_dir, tmp_path, one_thread):
    """--split test writes {subject: {id: letter}} with exactly the ids of the scored test rows; no score."""
    subjects = ["computer_network", "clinical_medicine"]
    code, out, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--tasks",
                             ",".join(f"ceval:{s}" for s in subjects), "--split", "test", "--limit", "4",
                             "--num-fewshot", "2", "--output-dir", str(tmp_path), "--no-progress")
    assert code == 0, err
    assert "warning" not in err  # recorded in the (test) results store without a score
    (file,) = tmp_path.rglob("predictions_ceval_test_*.json")
    predictions = json.loads(file.read_text(encoding="utf-8"))
    assert list(predictions) == subjects
    for subject in subjects:
        ids = [r["id"] for r in csv_rows("test", subject)][:4]
        assert list(predictions[subject]) == ids
        assert all(letter in ("A", "B", "C", "D") for letter in predictions[subject].values())
    result = json.loads(next(tmp_path.rglob("results_*.json")).read_text())["tasks"]["ceval"]
    assert result["split"] == "test" and result["micro"]["acc"] is None and result["predictions_file"] == file.name
    samples = [json.loads(line) for line in (file.parent / result["samples_file"]).read_text().splitlines()]
    assert [predictions[s["subject"]][s["id"]] for s in samples] == [s["prediction"] for s in samples]
    assert all("gold" not in s for s in samples) and "no answers: no score" in out


@pytest.mark.parametrize("tasks, split, needle", [
    ("ceval:logic", "train", "--split train: task ceval has splits dev, val, test"),
    ("ceval:logic", "dev", "--split dev is the few-shot split of ceval"),
    ("adgen", "test", "task adgen reads the fixed slice"),
])
def test_split_that_does_not_apply(capsys, tiny_model_dir, tmp_path, tasks, split, needle):
    code, out, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--tasks", tasks, "--split", split,
                             "--num-fewshot", "1" if "ceval" in tasks else "0", "--output-dir", str(tmp_path),
                             "--no-progress")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not any(tmp_path.rglob("*.json"))


def test_ceval_missing_vendored_file_says_restore(capsys, tiny_model_dir, tmp_path):
    """A checkout without a data file stops with one line naming the file, not a hub download."""
    from tests.helpers import spec_copy

    data = tmp_path / "ceval"
    (data / "val").mkdir(parents=True)
    spec = spec_copy("ceval", tmp_path, data, ["logic"])
    code, _, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--tasks", str(spec),
                           "--output-dir", str(tmp_path / "out"), "--no-progress")
    assert code == 2 and "logic_val.csv: missing data file for ceval/logic" in err and "PROVENANCE" in err


def test_adgen_reads_the_vendored_dev_split_offline():
    """HF_HUB_OFFLINE is set for tests: every one of the 1,070 rows comes from the vendored file,
    content as the prompt and summary as the reference (LLaMA-Factory's adgen_eval columns)."""
    (selection,) = resolve_tasks("adgen")
    data = load_samples(selection.spec)
    path = (REPO / "tasks" / "data" / "adgen" / "dev.json").resolve()  # the packaged file (tasks/ is a link)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert data.source == str(path) and data.data_sha256 is not None and len(data.samples) == len(rows) == 1070
    assert [(s.input, s.reference) for s in data.samples] == [(r["content"], r["summary"]) for r in rows]
    assert selection.spec.instruction == ""


def test_adgen_runs_offline(capsys, tiny_model_dir, tmp_path, one_thread):
    code, out, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--tasks", "adgen", "--limit", "2",
                             "--max-new-tokens", "4", "--output-dir", str(tmp_path), "--no-progress")
    assert code == 0, err
    result = json.loads(next(tmp_path.rglob("results_*.json")).read_text())["tasks"]["adgen"]
    assert result["n"] == 2 and "bleu-4" in result and "rouge-l" in result
    assert result["data"]["source"] == str((REPO / "tasks" / "data" / "adgen" / "dev.json").resolve())
