"""Cloze scoring (``scoring: cloze``): spec checks, lm-eval's token split, the hf engine against a direct
transformers computation, batch-size invariance, the evaluator's results, the request cache, and letter
specs left as they were. The comparison with lm-evaluation-harness itself is tests/test_cloze_vs_lmeval.py."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from evalkit.backends.cloze_tokens import encode_request
from evalkit.requests import ClozeRequest, build_cloze_requests
from evalkit.tasks.mc_data import load_split
from evalkit.tasks.registry import resolve_tasks
from tests.conftest import REPO
from tests.helpers import run_cli

MMLU = REPO / "tasks" / "mmlu_cloze.yaml"


def cloze_requests(subjects=("anatomy", "astronomy"), per_subject=3, shots=0):
    spec = resolve_tasks("mmlu_cloze")[0].spec
    requests = []
    for subject in subjects:
        questions = load_split(spec, subject, "test")[:per_subject]
        exemplars = load_split(spec, subject, "dev")[:shots]
        requests += build_cloze_requests(spec, "lm_eval", subject, questions, exemplars)
    return requests


def write_spec(tmp_path, **changes):
    raw = yaml.safe_load(MMLU.read_text(encoding="utf-8"))
    raw["data"]["dir"] = str(REPO / "tasks" / "data" / "mmlu")
    raw["subjects"] = {"anatomy": raw["subjects"]["anatomy"]}
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


# -- the spec ---------------------------------------------------------------------------------------------
def test_shipped_cloze_spec_is_lm_evals_mmlu_continuation_prompt():
    spec = resolve_tasks("mmlu_cloze")[0].spec
    assert spec.scoring == "cloze" and spec.target_delimiter == " "
    request = cloze_requests(("abstract_algebra",), 1, shots=1)[0]
    dev = load_split(spec, "abstract_algebra", "dev")[0]
    test = load_split(spec, "abstract_algebra", "test")[0]
    gold = dev.choices["ABCD".index(dev.answer)]
    assert request.prompt == ("The following are questions (with answers) about abstract algebra.\n\n"
                              f"Question: {dev.question.strip()}\nAnswer: {gold}\n\n"
                              f"Question: {test.question.strip()}\nAnswer:")
    assert request.continuations == tuple(" " + c for c in test.choices)
    assert resolve_tasks("mmlu")[0].spec.scoring == "letters"  # the letter specs keep their scoring


@pytest.mark.parametrize("changes, expected", [
    ({"scoring": "words"}, "scoring must be letters or cloze, not 'words'; fix 'scoring'"),
    ({"target_delimiter": 3}, "target_delimiter must be a string"),
    ({"scoring": None}, "target_delimiter applies to scoring: cloze only"),
    ({"scoring": "cloze", "target_delimiter": " ", "scorring": "cloze"}, "unknown key(s) scorring"),
])
def test_bad_cloze_keys_fail_with_one_line(capsys, tmp_path, changes, expected):
    path = write_spec(tmp_path, **changes)
    code, _, err = run_cli(capsys, "run", "--backend", "fake", "--model", "m", "--tasks", str(path), "--limit", "1",
                           "--output-dir", str(tmp_path / "out"), "--no-store", "--no-progress")
    assert code == 2 and expected in err and str(path) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cloze_refuses_chat_templates_before_loading(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--backend", "fake", "--model", "m", "--tasks", "mmlu_cloze:anatomy",
                           "--apply-chat-template", "--limit", "1", "--no-store", "--output-dir", str(tmp_path))
    assert code == 2 and "drop --apply-chat-template" in err


# -- tokens -----------------------------------------------------------------------------------------------
def test_token_split_is_lm_evals(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    request = ClozeRequest("t", "s", 0, "Header.\n\n", "Question: 2+2?\nAnswer: ", "A", ("four", "five"), ("A", "B"))
    context, continuations = encode_request(tokenizer, request)
    # lm-eval's _encode_pair: the prompt's trailing space moves to the continuation ("  four")
    assert context == tokenizer.encode("Header.\n\nQuestion: 2+2?\nAnswer:")
    for ids, choice in zip(continuations, ("four", "five")):
        whole = tokenizer.encode("Header.\n\nQuestion: 2+2?\nAnswer:" + "  " + choice)
        assert ids == whole[len(context):]


# -- the hf engine ----------------------------------------------------------------------------------------
@pytest.fixture(params=["packed trees", "packed trees, subject prefix", "repeated cache"])
def attention_path(request, monkeypatch):
    """The ways options attend to their question: packed as trees (CPU, plain decoders; over a subject's
    few-shot prefix cache when it is long enough), or through a repeated KV cache (CUDA, other models)."""
    import evalkit.backends.hf.cloze as cloze

    if request.param == "repeated cache":
        monkeypatch.setattr(cloze, "supports_shared_prefix_attention", lambda *args: False)
    if request.param != "packed trees":
        monkeypatch.setattr(cloze, "SUBJECT_PREFIX_TOKENS", 8)  # 1-shot prefixes of the tests count as long
    return request.param


def direct_loglikelihoods(lm, request) -> list[float]:
    """Each option's context + continuation through the plain transformers forward pass, one at a time."""
    context, continuations = encode_request(lm.tokenizer, request)
    values = []
    with torch.inference_mode():
        for ids in continuations:
            logits = lm.model(input_ids=torch.tensor([context + ids])).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            values.append(sum(float(logprobs[len(context) - 1 + j, token]) for j, token in enumerate(ids)))
    return values


@pytest.mark.parametrize("shots", [0, 1])
def test_hf_cloze_equals_a_direct_transformers_computation(tiny_lm, attention_path, shots, one_thread):
    from evalkit.backends.hf.cloze import score_cloze

    requests = cloze_requests(per_subject=3, shots=shots)
    for reuse in (True, False):
        scores = score_cloze(tiny_lm, requests, 4, progress=False, reuse_prefix=reuse)
        assert [s.request for s in scores] == requests
        for request, score in zip(requests, scores):
            assert score.loglikelihoods == pytest.approx(direct_loglikelihoods(tiny_lm, request), abs=1e-4)
            assert score.prompt_tokens == len(encode_request(tiny_lm.tokenizer, request)[0])
    assert len({round(ll, 3) for s in scores for ll in s.loglikelihoods}) > 4  # real, varied numbers


def test_hf_cloze_is_batch_size_invariant(tiny_lm, attention_path, one_thread):
    """With prefix reuse (the default) bit for bit: each question is computed alone. The full path batches
    padded rows, whose attention widths change the fp32 rounding (as the letter path's, within 1e-5)."""
    from evalkit.backends.hf.cloze import score_cloze

    requests = cloze_requests(per_subject=4, shots=1)
    for reuse in (True, False):
        one = score_cloze(tiny_lm, requests, 1, progress=False, reuse_prefix=reuse)
        for size in (8, "auto"):
            other = score_cloze(tiny_lm, requests, size, progress=False, reuse_prefix=reuse)
            assert [s.prediction for s in other] == [s.prediction for s in one]
            if reuse:
                assert [s.loglikelihoods for s in other] == [s.loglikelihoods for s in one]
                assert [s.greedy for s in other] == [s.greedy for s in one]
            for a, b in zip(one, other):
                assert a.loglikelihoods == pytest.approx(b.loglikelihoods, rel=1e-6, abs=1e-5)


def test_real_smollm2_cloze_reuse_matches_full_prompt(smollm2, one_thread):
    from evalkit.backends.hf.cloze import score_cloze

    requests = cloze_requests(("anatomy",), 3)
    reused = score_cloze(smollm2, requests, 8, progress=False, reuse_prefix=True)
    full = score_cloze(smollm2, requests, 8, progress=False, reuse_prefix=False)
    for a, b in zip(reused, full):
        assert a.prediction == b.prediction and a.prediction_norm == b.prediction_norm
        assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=2e-4)


# -- the evaluator, the cache, letter specs ----------------------------------------------------------------
def run_rows(capsys, tmp_path, *extra, model="fake-a"):
    code, out, err = run_cli(capsys, "run", "--backend", "fake", "--model", model, "--tasks",
                             "mmlu_cloze:anatomy,mmlu_cloze:astronomy", "--limit", "4", "--output-dir", str(tmp_path),
                             "--no-store", "--no-progress", *extra)
    assert code == 0, err
    results = json.loads(next(tmp_path.rglob("results_*.json")).read_text(encoding="utf-8"))
    task = results["tasks"]["mmlu_cloze"]
    rows = [json.loads(line) for line in next(tmp_path.rglob(task["samples_file"])).read_text().splitlines()]
    return out, task, rows


def test_results_and_samples_hold_acc_and_acc_norm(capsys, tmp_path):
    out, task, rows = run_rows(capsys, tmp_path)
    assert task["scoring"] == "cloze" and task["target_delimiter"] == " "
    assert "acc_norm (micro)" in out
    assert len(rows) == 8 and all(set(r["loglikelihoods"]) == set("ABCD") for r in rows)
    for r in rows:
        lls = r["loglikelihoods"]
        assert r["prediction"] == max(lls, key=lls.get) and r["correct"] == (r["prediction"] == r["gold"])
        assert r["correct_norm"] == (r["prediction_norm"] == r["gold"])
    assert task["micro"]["correct"] == sum(r["correct"] for r in rows)
    assert task["micro"]["correct_norm"] == sum(r["correct_norm"] for r in rows)
    assert task["micro"]["acc_norm"] == pytest.approx(task["micro"]["correct_norm"] / 8)
    assert task["subjects"]["anatomy"]["acc_norm"] is not None and "acc_norm" in task["macro"]


def test_acc_norm_divides_by_the_option_texts_length():
    from evalkit.backends.outputs import ClozeScore

    request = ClozeRequest("t", "s", 0, "", "Q", "B", ("a", "a much longer option"), ("A", "B"))
    score = ClozeScore(request, [-2.0, -10.0], [False, False], 1, False)
    assert score.prediction == "A" and score.prediction_norm == "B"  # -2/1 < -10/20


def test_cloze_requests_have_their_own_cache_keys(capsys, tmp_path, monkeypatch):
    import sqlite3

    cache = tmp_path / "requests.sqlite"
    monkeypatch.setenv("EVALKIT_REQUEST_CACHE", str(cache))
    _, _, first = run_rows(capsys, tmp_path / "one")
    _, _, again = run_rows(capsys, tmp_path / "two")
    assert [r["loglikelihoods"] for r in again] == [r["loglikelihoods"] for r in first]
    kinds = dict(sqlite3.connect(cache).execute("SELECT kind, COUNT(*) FROM responses GROUP BY kind").fetchall())
    assert kinds == {"cloze": 8}


def test_letter_specs_score_and_key_as_before(capsys, tmp_path):
    """A letter spec's results and samples have no cloze fields, and its request payload is unchanged."""
    code, _, err = run_cli(capsys, "run", "--backend", "fake", "--model", "m", "--tasks", "mmlu:anatomy", "--limit", "2",
                           "--output-dir", str(tmp_path), "--no-store", "--no-progress")
    assert code == 0, err
    results = json.loads(next(tmp_path.rglob("results_*.json")).read_text(encoding="utf-8"))
    task = results["tasks"]["mmlu"]
    assert "scoring" not in task and "acc_norm" not in task["micro"]
    row = json.loads(next(tmp_path.rglob(task["samples_file"])).read_text().splitlines()[0])
    assert set(row) == {"task", "subject", "index", "id", "prompt_sha256", "prompt_tokens", "truncated",
                        "probabilities", "prediction", "gold", "correct"}


def test_each_context_is_computed_once(tiny_lm, one_thread):
    """Packed as trees, a question's context runs once for all its options (lm-eval runs it once per option),
    and each continuation runs but its last token."""
    from evalkit.backends.hf.cloze import score_cloze
    from tests.test_prefix_reuse import count_computed_tokens

    requests = cloze_requests(per_subject=3)
    encoded = [encode_request(tiny_lm.tokenizer, r) for r in requests]
    seen, handle = count_computed_tokens(tiny_lm.model)
    try:
        score_cloze(tiny_lm, requests, 8, progress=False)
    finally:
        handle.remove()
    once = sum(len(ctx) + sum(len(ids) - 1 for ids in conts) for ctx, conts in encoded)
    per_option = sum(len(ctx) + len(ids) - 1 for ctx, conts in encoded for ids in conts)
    assert sum(seen) == once < per_option / 2


def test_prompts_longer_than_the_context_stop_or_keep_their_last_tokens(tiny_lm, one_thread):
    """As lm-eval: context + continuation cut to the model's last ``context`` tokens with --truncation left
    (on the full path); without it one line says what to do."""
    import dataclasses

    from evalkit.backends.hf.cloze import score_cloze
    from evalkit.errors import EvalkitError

    requests = cloze_requests(("anatomy",), 2, shots=1)
    longest = max(len(encode_request(tiny_lm.tokenizer, r)[0]) for r in requests)
    short = dataclasses.replace(tiny_lm, context_length=longest - 8)
    with pytest.raises(EvalkitError, match="do not fit the model's context .* pass --truncation left"):
        score_cloze(short, requests, 2, progress=False)
    scores = score_cloze(short, requests, 2, truncation="left", progress=False)
    assert any(s.truncated for s in scores)
    for request, score in zip(requests, scores):
        context, continuations = encode_request(tiny_lm.tokenizer, request)
        with torch.inference_mode():
            for ids, ll in zip(continuations, score.loglikelihoods):
                kept = (context + ids)[-(short.context_length + 1):][:-1]  # lm-eval's window
                logprobs = torch.log_softmax(tiny_lm.model(input_ids=torch.tensor([kept])).logits[0].float(), -1)
                direct = sum(float(logprobs[len(kept) - len(ids) + j, t]) for j, t in enumerate(ids))
                assert ll == pytest.approx(direct, abs=1e-4)
