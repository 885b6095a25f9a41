"""Multiple choice with N options (2-26 per question, labels from the spec): specs built from vendored CMMLU
questions with options dropped or a fifth added, scored by hf and by openai against a real `evalkit serve`."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.helpers import run_cli

AGRONOMY = REPO / "tasks" / "data" / "cmmlu"
STYLE = {"header": "以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n",
         "example": "{question}\n{options}\n答案：", "target": "{answer}", "separator": "\n\n"}


def vendored(split: str) -> list[dict]:
    with open(AGRONOMY / split / "agronomy.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def reshaped(rows: list[dict], count: int) -> list[dict]:
    """Each row with ``count`` option columns: the fifth is another question's option, a dropped option's
    text takes the place of the last kept one when it was the answer. Every third row of the 5-option
    file leaves E empty, and every fourth of the 3-option file leaves C empty where it can (2 options)."""
    out = []
    for i, row in enumerate(rows):
        options = [row[x] for x in "ABCD"] + [rows[(i + 1) % len(rows)]["A"]]
        answer = "ABCD".index(row["Answer"])
        if answer >= count:  # the answer is dropped: it replaces the last option kept
            options[count - 1], answer = options[answer], count - 1
        options = options[:count]
        if count == 5 and i % 3 == 0:
            options[4] = ""
        if count == 3 and i % 4 == 0 and answer < 2:
            options[2] = " "  # blank: an empty trailing option, dropped
        out.append({"Question": row["Question"], **dict(zip("ABCDE", options)), "Answer": "ABCDE"[answer]})
    return out


def write_task(directory: Path, count: int, labels=None) -> Path:
    """A spec ``cmmlu<count>`` over agronomy with ``count`` option columns (``labels``: the spec's, default letters)."""
    names = list({"digits": "12345", None: "ABCDE"}.get(labels, labels))[:count]
    for split in ("dev", "test"):
        rows = reshaped(vendored(split), count)
        path = directory / "data" / split / "agronomy.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["Question", *"ABCDE"[:count], "Answer"])
            for row in rows:
                answer = names["ABCDE".index(row["Answer"])]
                writer.writerow([row["Question"], *(row[x] for x in "ABCDE"[:count]), answer])
    spec = {"task": f"cmmlu{count}", "type": "multiple_choice", "language": "zh",
            "data": {"dir": "data", "files": "{split}/{subject}.csv", "header": True,
                     "columns": {"question": "Question", **dict(zip(names, "ABCDE")), "answer": "Answer"}},
            "splits": ["dev", "test"], "eval_split": "test", "fewshot_split": "dev",
            "categories": ["Other"], "subjects": {"agronomy": {"name": "农学", "categories": ["Other"]}},
            "prompt_styles": {"llamafactory": STYLE}}
    if labels:
        spec["labels"] = labels
    path = directory / f"cmmlu{count}.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return path


def samples(out: Path, task: str) -> list[dict]:
    (path,) = sorted(out.glob(f"*/samples_{task}_*.jsonl"))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_spec_reads_option_columns_and_drops_empty_trailing_options(tmp_path):
    from evalkit.requests import build_requests, choice_targets
    from evalkit.tasks.loading import load_spec
    from evalkit.tasks.mc_data import load_split

    five = load_spec(write_task(tmp_path, 5))
    assert five.option_labels == tuple("ABCDE") and choice_targets(five, "llamafactory") == list("ABCDE")
    questions = load_split(five, "agronomy", "test")
    assert {len(q.choices) for q in questions} == {4, 5}
    assert all(q.labels == tuple("ABCDE"[:len(q.choices)]) and q.answer in q.labels for q in questions)
    (request,) = build_requests(five, "llamafactory", "agronomy", questions[:1], [])
    lines = request.question.splitlines()
    assert lines[1:-1] == [f"{x}. {t}" for x, t in zip("ABCD", questions[0].choices)]  # E was empty: no E line
    assert request.labels == tuple("ABCD") and questions[0].fields()["E"] == ""

    three = load_spec(write_task(tmp_path, 3))
    counts = [len(q.choices) for q in load_split(three, "agronomy", "test")]
    assert set(counts) == {2, 3}
    digits = load_spec(write_task(tmp_path / "digits", 3, labels="digits"))
    assert digits.option_labels == ("1", "2", "3")
    assert {q.answer for q in load_split(digits, "agronomy", "test")} <= {"1", "2", "3"}


def test_shipped_specs_keep_four_letters():
    from evalkit.tasks.loading import load_spec

    for task in ("mmlu", "cmmlu", "ceval"):
        assert load_spec(REPO / "tasks" / f"{task}.yaml").option_labels == ("A", "B", "C", "D")


@pytest.mark.parametrize("change, expected", [
    (lambda s: s.update(labels="roman"), "labels must be letters, digits or a list"),
    (lambda s: s.update(labels=["A", "A", "B"]), "distinct"),
    (lambda s: s["data"]["columns"].pop("B"), "the first labels in order"),
    (lambda s: [s["data"]["columns"].pop(x) for x in "BC"], "name at least two"),
    (lambda s: s.update(lables="digits"), "unknown key(s) lables"),
])
def test_bad_label_specs_fail_with_one_line(capsys, tmp_path, change, expected):
    path = write_task(tmp_path, 3)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(spec)
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    code, _, err = run_cli(capsys, "run", "--model", "m", "--backend", "fake", "--tasks", str(path), "--limit", "2",
                           "--output-dir", str(tmp_path / "out"), "--no-store", "--no-progress")
    assert code == 2 and expected in err and str(path) in err and len(err.strip().splitlines()) == 1


def test_answer_outside_the_questions_own_options_names_the_row(capsys, tmp_path):
    path = write_task(tmp_path, 3)
    test_file = tmp_path / "data" / "test" / "agronomy.csv"
    with open(test_file, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    line = next(i for i, row in enumerate(rows) if i and not row[3].strip())  # a 2-option question (C blank)
    rows[line][4] = "C"
    with open(test_file, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    code, _, err = run_cli(capsys, "run", "--model", "m", "--backend", "fake", "--tasks", str(path),
                           "--num-fewshot", "0", "--output-dir", str(tmp_path / "out"), "--no-store", "--no-progress")
    assert code == 2 and f"{test_file}:{line + 1}: answer 'C' is not one of A, B; fix the row" in err


def test_fake_backend_scores_each_question_over_its_own_labels(capsys, tmp_path):
    path = write_task(tmp_path, 3, labels="digits")
    code, _, err = run_cli(capsys, "run", "--model", "m", "--backend", "fake", "--tasks", str(path), "--limit", "12",
                           "--output-dir", str(tmp_path / "out"), "--no-store", "--no-progress")
    assert code == 0, err
    rows = samples(tmp_path / "out", "cmmlu3")
    assert {len(r["probabilities"]) for r in rows} == {2, 3}
    for r in rows:
        assert list(r["probabilities"]) == ["1", "2", "3"][:len(r["probabilities"])]
        assert math.isclose(sum(r["probabilities"].values()), 1.0) and r["prediction"] in r["probabilities"]
        assert r["prediction"] == max(r["probabilities"], key=r["probabilities"].get)


def test_hf_engine_restricts_the_softmax_to_a_questions_own_labels(tiny_lm, tmp_path, one_thread):
    """The same prompts scored as 5-option and as 3-option questions: the 3-option probabilities are the
    5-option ones renormalised over A-C, through prefix reuse and the full-prompt path alike."""
    from dataclasses import replace

    from evalkit.backends.hf.multiple_choice import score_multiple_choice
    from evalkit.requests import build_requests, choice_targets
    from evalkit.tasks.loading import load_spec
    from evalkit.tasks.mc_data import load_split

    spec = load_spec(write_task(tmp_path, 5))
    questions = [q for q in load_split(spec, "agronomy", "test") if len(q.choices) == 5][:6]
    requests = build_requests(spec, "llamafactory", "agronomy", questions, load_split(spec, "agronomy", "dev")[:2])
    targets = choice_targets(spec, "llamafactory")
    mixed = [replace(r, labels=tuple("ABC")) if i % 2 else r for i, r in enumerate(requests)]
    for reuse in (False, True):
        full = score_multiple_choice(tiny_lm, requests, targets, 4, progress=False, reuse_prefix=reuse)
        part = score_multiple_choice(tiny_lm, mixed, targets, 4, progress=False, reuse_prefix=reuse)
        for whole, own in zip(full, part):
            count = len(own.request.labels)
            assert len(own.probabilities) == count and own.prediction in own.request.labels
            expected = [p / sum(whole.probabilities[:count]) for p in whole.probabilities[:count]]
            assert max(abs(a - b) for a, b in zip(own.probabilities, expected)) < 1e-6


def test_vllm_allows_only_a_questions_own_label_tokens(tiny_lm):
    """vLLM is not installed here: the SamplingParams keywords it would get, per option count."""
    from evalkit.backends.outputs import choice_token_ids
    from evalkit.backends.vllm import choice_sampling

    ids = choice_token_ids(tiny_lm.tokenizer, list("ABCDE"))
    assert len(set(ids)) == 5 and ids[:4] == choice_token_ids(tiny_lm.tokenizer, list("ABCD"))
    params = choice_sampling(ids, [5, 3, 5, 2])
    assert sorted(params) == [2, 3, 5]
    for count, kwargs in params.items():
        assert kwargs == {"max_tokens": 1, "temperature": 0.0, "logprobs": count, "allowed_token_ids": ids[:count]}
    four = choice_token_ids(tiny_lm.tokenizer, list("ABCD"))  # the shipped specs: what vLLM was given before
    assert choice_sampling(four, [4, 4]) == {4: {"max_tokens": 1, "temperature": 0.0, "logprobs": 4,
                                                 "allowed_token_ids": four}}


def test_generate_mode_parses_a_questions_own_labels():
    from evalkit.backends.openai_api import PARSE_RULE, parse_rule

    assert parse_rule(("A", "B", "C", "D")) is PARSE_RULE
    letters, digits = parse_rule(tuple("ABCDE")), parse_rule(("1", "2", "3"))
    assert letters.match(" (E) because").group(1) == "E" and letters.match("F.") is None
    assert letters.match("Each") is None
    assert digits.match("2. x").group(1) == "2" and digits.match("12") is None and digits.match("4") is None


def test_cache_keys_of_full_questions_are_unchanged():
    from evalkit.backends.outputs import options_key
    from evalkit.requests import MultipleChoiceRequest

    full = MultipleChoiceRequest("t", "s", 0, "p", "q", "A")
    assert options_key(full, list("ABCD")) == {}
    assert options_key(full, list("ABCDE")) == {"options": 4}


def test_hf_and_openai_agree_on_three_and_five_options(capsys, monkeypatch, tmp_path, varied_model_dir, one_thread):
    from tests.test_api_backend import KEY, serving

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    specs = [write_task(tmp_path / "three", 3), write_task(tmp_path / "five", 5)]
    tasks = ",".join(str(s) for s in specs)
    common = ["--tasks", tasks, "--num-fewshot", "2", "--limit", "12", "--no-progress", "--no-store"]
    code, _, err = run_cli(capsys, "run", "--model", str(varied_model_dir), *common, "--output-dir", str(tmp_path / "hf"))
    assert code == 0, err
    with serving(str(varied_model_dir), "--api-key", KEY, name="tiny") as url:
        # a random model's letters are nowhere near the top-20: --tokenizer biases each question's own in
        code, _, err = run_cli(capsys, "run", "--backend", "openai", "--base-url", url, "--model", "tiny",
                               "--tokenizer", str(varied_model_dir), *common, "--output-dir", str(tmp_path / "api"))
    assert code == 0, err
    for task, counts in (("cmmlu3", {2, 3}), ("cmmlu5", {4, 5})):
        hf, api = samples(tmp_path / "hf", task), samples(tmp_path / "api", task)
        assert len(hf) == 12 and {len(r["probabilities"]) for r in hf} == counts
        assert [r["prompt_sha256"] for r in api] == [r["prompt_sha256"] for r in hf]
        assert [r["prediction"] for r in api] == [r["prediction"] for r in hf]
        assert [list(r["probabilities"]) for r in api] == [list(r["probabilities"]) for r in hf]
        worst = max(abs(a["probabilities"][k] - h["probabilities"][k]) for a, h in zip(api, hf) for k in h["probabilities"])
        assert worst < 1e-4
        assert len({r["prediction"] for r in hf}) > 1  # the model's answers vary: the agreement is not vacuous


def test_question_with_one_option_left_names_the_row(capsys, tmp_path):
    path = write_task(tmp_path, 3)
    test_file = tmp_path / "data" / "test" / "agronomy.csv"
    with open(test_file, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    rows[3][2:4] = ["", ""]
    rows[3][4] = "A"
    with open(test_file, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    code, _, err = run_cli(capsys, "run", "--model", "m", "--backend", "fake", "--tasks", str(path),
                           "--num-fewshot", "0", "--output-dir", str(tmp_path / "out"), "--no-store", "--no-progress")
    assert code == 2 and f"{test_file}:4: 1 non-empty option(s); a question needs at least two" in err
