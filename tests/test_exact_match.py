"""Exact match: normalisation, answer extraction, numeric equality on real GSM8K answers; the gsm8k spec's
8-shot prompt; per-sample ``correct`` and the exact_match summary from a fake-backend run; McNemar in the
report and the gate; exact_match as the stored headline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from evalkit.errors import EvalkitError
from evalkit.metrics.exact_match import (
    ExactMatchScoring,
    answers_equal,
    extract,
    normalise_text,
    parse_number,
    reference_answer,
    score_sample,
)
from tests.conftest import REPO
from tests.helpers import run_cli

GSM8K = REPO / "tasks" / "data" / "gsm8k"


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (GSM8K / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]


def scoring(**raw) -> ExactMatchScoring:
    return ExactMatchScoring.from_dict(raw, Path("spec.yaml"))


def gsm8k_scoring() -> ExactMatchScoring:
    from evalkit.tasks.registry import resolve_tasks

    return resolve_tasks("gsm8k")[0].spec.scoring


# -- normalisation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps, text, expected", [
    (("case",), "The Answer IS", "the answer is"),
    (("whitespace",), "  two\n\twords  ", "two words"),
    (("punctuation",), "it's 3.5, (ok)!", "its 35 ok"),
    (("articles", "whitespace"), "a cat and an owl saw the theatre", "cat and owl saw theatre"),
    (("numbers",), "room 101b", "room b"),
    (("case", "punctuation", "articles", "whitespace"), "The  Eiffel Tower.", "eiffel tower"),
])
def test_each_normalisation_step(steps, text, expected):
    assert normalise_text(text, steps) == expected


def test_squad_preset_and_ignore_regexes():
    squad = scoring(normalise=["squad"])
    assert squad.normalise == ("case", "punctuation", "articles", "whitespace")
    assert answers_equal("The Eiffel Tower!", "eiffel  tower", squad)
    assert not answers_equal("Eiffel Tower", "Louvre", squad)
    plain = scoring()
    assert not answers_equal("The Eiffel Tower!", "eiffel tower", plain)  # no normalisation: exact strings
    # lm-eval's gsm8k regexes_to_ignore: commas and dollar signs deleted from both sides
    lm_eval = scoring(ignore_regexes=[",", "\\$"], normalise=["case"])
    assert answers_equal("$1,000", "1000", lm_eval) and not answers_equal("1000.0", "1000", lm_eval)


# -- extraction ------------------------------------------------------------------------------------------


def test_strict_then_last_number_on_real_gsm8k_answers():
    spec_scoring = gsm8k_scoring()
    test = rows("test")
    gold = reference_answer(test[0]["answer"], spec_scoring, "row 0")
    assert gold == "18"  # "... = $<<9*2=18>>18 every day at the farmer's market.\n#### 18"
    # a worked solution in the exemplars' format: the strict rule (0) reads the number after ####
    solution = "She has 16 - 3 - 4 = 9 eggs left.\nShe makes 9 * 2 = $18.\n#### 18\n\n"
    assert score_sample(solution, gold, spec_scoring) == {"answer": "18", "gold": "18", "extracted_by": 0,
                                                           "correct": True}
    # no ####: the last number (rule 1), "$18." read as 18
    assert score_sample("9 eggs at $2 each make $18.", gold, spec_scoring)["correct"] is True
    assert score_sample("9 eggs at $2 each make $18.", gold, spec_scoring)["extracted_by"] == 1
    # #### wins over a later number; a wrong strict answer is wrong even if the right number comes later
    assert score_sample("#### 9 so 18", gold, spec_scoring)["answer"] == "9"
    # nothing numeric: no answer, wrong
    assert score_sample("I do not know.", gold, spec_scoring) == {"answer": None, "gold": "18", "extracted_by": None,
                                                                  "correct": False}
    # every reference in the vendored test split has a readable answer
    assert all(re.fullmatch(r"-?[0-9.,]+", reference_answer(r["answer"], spec_scoring, "row")) for r in test)


def test_first_last_group_and_fallback():
    text = "first 12 then 34 and finally 56"
    number = [{"regex": r"(\d)(\d)", "select": "first"}]
    assert extract(text, scoring(extract=number).extract) == ("1", 0)  # first non-empty group
    last_whole = scoring(extract=[{"regex": r"(\d)(\d)", "select": "last", "group": 0}])
    assert extract(text, last_whole.extract) == ("56", 0)
    second_group = scoring(extract=[{"regex": r"(\d)(\d)", "select": "last", "group": 2}])
    assert extract(text, second_group.extract) == ("6", 0)
    # lm-eval's flexible-extract: alternation groups, the non-empty one is taken
    flexible = scoring(extract=[{"regex": "(-?[$0-9.,]{2,})|(-?[0-9]+)", "select": "last"}])
    assert extract("costs $1,200 or 7", flexible.extract) == ("7", 0)
    assert extract("costs 7 or $1,200", flexible.extract) == ("$1,200", 0)
    # no rule matches: the fallback (lm-eval's "[invalid]") or None
    invalid = scoring(extract=number, fallback="[invalid]")
    assert extract("no digits", invalid.extract, invalid.fallback) == ("[invalid]", None)
    assert score_sample("no digits", "[invalid]", invalid)["correct"] is True  # the fallback is an answer like any
    assert extract("no digits", scoring(extract=number).extract) == (None, None)
    assert extract("whole text", ()) == ("whole text", None)  # no rules: the generation itself


# -- numeric equality ------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer, gold", [("1,000", "1000"), ("3.0", "3"), ("$5", "5"), ("18.", "18"),
                                          ("-7", "-7.00"), ("(12)", "12"), ("$1,000.00.", "1000"), (".5", "0.5")])
def test_numbers_equal(answer, gold):
    assert answers_equal(answer, gold, scoring(match="numeric"))


@pytest.mark.parametrize("answer, gold", [("-7", "7"), ("1,001", "1000"), ("35", "3.5"), ("5 apples", "5")])
def test_numbers_differ(answer, gold):
    assert not answers_equal(answer, gold, scoring(match="numeric"))


def test_parse_number_refuses_what_is_not_one_number():
    assert [parse_number(t) for t in ("1/2", "abc", "", "1.2.3", "5 apples")] == [None] * 5
    assert not answers_equal("3.0", "3", scoring(match="text"))  # text match compares strings


def test_real_gsm8k_references_with_commas_match_their_plain_digits():
    spec_scoring = gsm8k_scoring()
    golds = [reference_answer(r["answer"], spec_scoring, "row") for r in rows("test")]
    with_commas = [g for g in golds if "," in g]
    assert with_commas  # 2,125, 114,200, ...
    for gold in with_commas:
        assert score_sample(f"#### {gold.replace(',', '')}", gold, spec_scoring)["correct"]
        assert score_sample(f"The answer is ${gold}.", gold, spec_scoring)["correct"]


# -- the spec --------------------------------------------------------------------------------------------


def test_gsm8k_spec_builds_an_8_shot_prompt_from_the_first_train_rows():
    from evalkit.evaluators.generation import build_prompt, fewshot_count
    from evalkit.tasks.generation_data import load_exemplars, load_samples
    from evalkit.tasks.registry import resolve_tasks

    spec = resolve_tasks("gsm8k")[0].spec
    assert spec.stop == ("Question:", "</s>", "<|im_end|>") and spec.chat_template is False
    k = fewshot_count(spec, None)  # --num-fewshot not given: the spec's k
    assert k == 8 and fewshot_count(spec, 3) == 3 and fewshot_count(spec, 0) == 0
    exemplars, _ = load_exemplars(spec, k)
    train, test = rows("train"), rows("test")
    prompt = build_prompt(spec, exemplars, load_samples(spec, 1).samples[0].input)
    blocks = prompt.split("\n\n")
    assert len(blocks) == 9
    for block, row in zip(blocks, train[:8]):
        expected = re.sub(r"<<[^>]*>>", "", row["answer"])
        assert block == f"Question: {row['question']}\nAnswer: {expected}"
        assert expected.endswith("#### " + row["answer"].split("#### ")[-1])
    assert blocks[8] == f"Question: {test[0]['question']}\nAnswer:"
    assert "<<" not in prompt and train[8]["question"] not in prompt
    assert blocks[0].startswith("Question: Natalia sold clips")  # the first train row
    with pytest.raises(EvalkitError, match="fewer than the 8000 asked for"):
        load_exemplars(spec, 8000)


def write_spec(directory: Path, **changes) -> Path:
    raw = yaml.safe_load((REPO / "tasks" / "gsm8k.yaml").read_text(encoding="utf-8"))
    raw["data"]["path"] = str(GSM8K / "test.jsonl")
    raw["fewshot"]["path"] = str(GSM8K / "train.jsonl")
    for key, value in changes.items():
        target = raw
        *parents, last = key.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    path = directory / "my_gsm8k.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize("key, value, message", [
    ("scoring.extract", [{"regex": "(unclosed", "select": "first"}], "scoring.extract[0].regex '(unclosed' is not a valid"),
    ("scoring.extract", [{"regex": "x", "select": "middle"}], "scoring.extract[0].select 'middle' is not one of first, last"),
    ("scoring.extract", [{"regex": "(x)", "group": 2}], "group 2: the regex has 1 group"),
    ("scoring.extract", [{"regex": "x", "pick": "first"}], "scoring.extract.0: unknown key(s) pick"),
    ("scoring.normalise", ["lowercase"], "scoring.normalise 'lowercase' is not one of"),
    ("scoring.match", "fuzzy", "scoring.match 'fuzzy' is not one of text, numeric"),
    ("scoring.metric", "bleu", "scoring.metric 'bleu' is not one of bleu_rouge, exact_match"),
    ("scoring.ignore_case", True, "scoring: unknown key(s) ignore_case"),
    ("fewshot.num_fewshot", -1, "fewshot.num_fewshot must be a non-negative integer"),
    ("prompt", "Question:", "'prompt' must be a string holding {input}"),
])
def test_bad_scoring_and_fewshot_keys_are_one_line_naming_the_field(tmp_path, capsys, key, value, message):
    path = write_spec(tmp_path, **{key: value})
    code, _, err = run_cli(capsys, "run", "--model", "m", "--backend", "fake", "--tasks", str(path),
                             "--output-dir", str(tmp_path / "out"), "--no-store")
    assert code == 2 and message in err and str(path) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_reference_without_an_answer_stops_before_generating(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "answer": "two"}) + "\n", encoding="utf-8")
    path = write_spec(tmp_path, **{"data.path": str(data)})
    code, _, err = run_cli(capsys, "run", "--model", "m", "--backend", "fake", "--tasks", str(path),
                           "--output-dir", str(tmp_path / "out"), "--no-store")
    assert code == 2 and f"{data} row 0: scoring.reference_extract finds no answer" in err


# -- runs, report, gate, store ---------------------------------------------------------------------------


def counting_spec(directory: Path, n: int = 40) -> Path:
    """A zero-shot task whose answer is the number most repeated in the question, so that a fake model
    (which answers with words of its prompt) is right on some samples and wrong on others."""
    data = directory / "count.jsonl"
    lines = [json.dumps({"question": f"{i % 7} {i % 7} {i % 7} {i % 5 + 10}", "answer": f"#### {i % 7}"})
             for i in range(n)]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = {"task": "count", "type": "generation", "data": {"path": str(data), "input": "question", "reference": "answer"},
            "prompt": "Question: {input}\nAnswer:", "chat_template": False, "max_new_tokens": 16,
            "scoring": {"metric": "exact_match",
                        "extract": [{"regex": "(-?[$0-9.,]{2,})|(-?[0-9]+)", "select": "last"}],
                        "reference_extract": [{"regex": "#### (.*)"}], "match": "numeric"}}
    path = directory / "count.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def run_task(capsys, model: str, tasks: str, out: Path, store: Path, *extra: str,
             backend: str = "fake") -> tuple[Path, dict, list[dict], str]:
    """`evalkit run` of one task: (results file, its task block, its samples rows, stdout)."""
    code, stdout, err = run_cli(capsys, "run", "--model", model, "--backend", backend, "--tasks", tasks,
                                "--output-dir", str(out), "--store", str(store), "--no-progress", *extra)
    assert code == 0, err
    (results,) = sorted(out.rglob("results_*.json"))
    data = json.loads(results.read_text(encoding="utf-8"))
    block = next(iter(data["tasks"].values()))
    samples = [json.loads(line) for line in (results.parent / block["samples_file"]).read_text().splitlines()]
    return results, block, samples, stdout


def test_fake_gsm8k_run_writes_correct_per_sample_and_exact_match(tmp_path, capsys):
    from evalkit.metrics.accuracy import mean_stderr

    _, block, samples, out = run_task(capsys, "fake-a", "gsm8k", tmp_path / "out", tmp_path / "s.sqlite", "--limit", "4")
    assert [r["index"] for r in samples] == [0, 1, 2, 3]
    assert all(isinstance(r["correct"], bool) and r["gold"] for r in samples)
    assert [r["gold"] for r in samples] == ["18", "3", "70000", "540"]
    values = [float(r["correct"]) for r in samples]
    assert block["n"] == 4 and block["exact_match"] == sum(values) / 4
    assert block["exact_match_stderr"] == pytest.approx(mean_stderr(values))
    assert block["num_fewshot"] == 8 and block["fewshot"]["indices"] == [[0, 7]] and block["chat_template"] is False
    assert sum(block["extracted_by"].values()) == 4
    assert "bleu-4" not in block and "exact_match %, 8-shot" in out and "| 4 " in out


def test_counting_task_is_compared_with_mcnemar_in_report_and_gate(tmp_path, capsys):
    from evalkit.report.compare import compare
    from evalkit.report.significance import mcnemar_exact

    store, spec = tmp_path / "store.sqlite", str(counting_spec(tmp_path))
    first, block_a, rows_a, _ = run_task(capsys, "fake-a", spec, tmp_path / "a", store)
    second, block_b, rows_b, _ = run_task(capsys, "fake-b", spec, tmp_path / "b", store)
    outcomes_a, outcomes_b = [r["correct"] for r in rows_a], [r["correct"] for r in rows_b]
    assert 0 < sum(outcomes_a) < 40 and outcomes_a != outcomes_b  # right and wrong answers, differently placed
    expected = mcnemar_exact(outcomes_a, outcomes_b)

    report = compare("fake-a", "fake-b", str(store))
    (row,) = [m for m in report["tasks"][0]["metrics"] if m["metric"] == "exact_match"]
    assert row["test"] == "McNemar exact" and row["p_value"] == pytest.approx(expected.p_value)
    assert row["detail"]["base_only"] == expected.detail["base_only"] and row["n"] == 40
    assert row["base"] == pytest.approx(100 * block_a["exact_match"]) and row["delta_ci"] is not None

    verdict = tmp_path / "verdict.json"
    code, _, err = run_cli(capsys, "gate", "--baseline", str(first), "--candidate", str(second), "--verdict", str(verdict),
                           "--floor", "count=1")
    assert code in (0, 1), err
    rows = json.loads(verdict.read_text())["rows"]
    paired = next(r for r in rows if r["check"] == "paired")
    assert paired["test"] == "McNemar exact" and paired["metric"] == "exact_match"
    assert paired["p_value"] == pytest.approx(expected.p_value)
    floor = next(r for r in rows if r["check"] == "floor")
    assert floor["test"].startswith("one-sided Wilson") and floor["candidate"] == pytest.approx(100 * block_b["exact_match"])


def test_an_exact_match_drop_fails_the_gate_and_a_contradicted_summary_is_refused(tmp_path, capsys):
    store, spec = tmp_path / "store.sqlite", str(counting_spec(tmp_path))
    first, block, _, _ = run_task(capsys, "fake-a", spec, tmp_path / "a", store)
    worse_dir = tmp_path / "worse"
    worse_dir.mkdir()
    samples = first.parent / block["samples_file"]
    rows = [{**json.loads(line), "correct": False} for line in samples.read_text().splitlines()]
    (worse_dir / samples.name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = json.loads(first.read_text())
    data["tasks"]["count"].update(exact_match=0.0, correct=0)
    worse = worse_dir / first.name
    worse.write_text(json.dumps(data), encoding="utf-8")
    code, out, err = run_cli(capsys, "gate", "--baseline", str(first), "--candidate", str(worse))
    assert code == 1, err
    assert "REGRESSION: count exact_match" in out
    data["tasks"]["count"]["exact_match"] = 0.5  # a summary its samples contradict
    worse.write_text(json.dumps(data), encoding="utf-8")
    code, _, err = run_cli(capsys, "gate", "--baseline", str(first), "--candidate", str(worse))
    assert code == 2 and "says overall exact_match 0.5000 (n=40) but its samples" in err


def test_store_records_exact_match_as_the_headline(tmp_path, capsys):
    from evalkit.store.record import read_run

    first, block, _, _ = run_task(capsys, "fake-a", str(counting_spec(tmp_path)), tmp_path / "a", tmp_path / "s.sqlite")
    (task,) = read_run(first).tasks
    assert task.metric == "exact_match" and task.score == block["exact_match"] and task.n == 40
    assert [(s.metric, s.value, s.stderr) for s in task.scores] == [("exact_match", block["exact_match"],
                                                                      block["exact_match_stderr"])]


def test_the_spec_turns_the_chat_template_off_and_the_flag_turns_it_on(tmp_path, capsys, tiny_model_dir, one_thread):
    spec = str(counting_spec(tmp_path, n=2))
    for flags, chat in (((), False), (("--apply-chat-template",), True)):
        out = tmp_path / ("chat" if chat else "plain")
        _, block, samples, _ = run_task(capsys, str(tiny_model_dir), spec, out, tmp_path / "s.sqlite",
                                        "--max-new-tokens", "3", *flags, backend="hf")
        assert block["chat_template"] is chat
        assert samples[0]["prompt_tokens"] > 20 if chat else samples[0]["prompt_tokens"] < 20  # the template's turn markers


def test_smollm2_answers_in_the_exemplars_format_and_stops_at_the_next_question(tmp_path, capsys):
    """The real embedded model, 8-shot, 2 questions: the exemplars teach the '#### N' ending (the strict rule
    reads it) and the stop string cuts the generation before a made-up next question."""
    from tests.conftest import SMOLLM2

    _, block, samples, _ = run_task(capsys, SMOLLM2, "gsm8k", tmp_path / "out", tmp_path / "s.sqlite", "--limit", "2",
                                    backend="hf")
    assert block["n"] == 2 and block["num_fewshot"] == 8 and block["chat_template"] is False
    for row in samples:
        assert row["extracted_by"] == 0 and "####" in row["prediction"] and "Question:" not in row["prediction"]
        assert row["finish"] in ("stop", "eos")
        assert row["correct"] == answers_equal(row["answer"], row["gold"], gsm8k_scoring())


def test_num_fewshot_on_a_spec_without_exemplars_and_a_missing_fewshot_file_are_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--model", "m", "--backend", "fake", "--tasks", "alpaca_en", "--num-fewshot", "2",
                           "--output-dir", str(tmp_path / "out"), "--no-store")
    assert code == 2 and "task alpaca_en is zero-shot (its spec" in err and "drop --num-fewshot" in err
    path = write_spec(tmp_path, **{"fewshot.path": str(tmp_path / "nope.jsonl")})
    code, _, err = run_cli(capsys, "run", "--model", "m", "--backend", "fake", "--tasks", str(path),
                           "--output-dir", str(tmp_path / "out"), "--no-store")
    assert code == 2 and f"{tmp_path / 'nope.jsonl'}: few-shot file for task gsm8k does not exist" in err
    assert len(err.strip().splitlines()) == 1
