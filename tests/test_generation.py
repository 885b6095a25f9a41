"""Generation tasks end to end on a tiny random model: results, per-sample rows, stop strings, batching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evalkit.evaluators.base import RunConfig
from evalkit.metrics.text import METRICS, sample_scores
from evalkit.backends.hf.generation import generate, left_padded, render_prompt, tokenize_prompts
from tests.conftest import REPO, build_tiny_model
from tests.helpers import run_cli

PROMPTS = ["Give three tips for staying healthy.", "What is the capital of France?", "保持健康的三个提示。",
           "Translate to French: good morning", "Write a haiku about autumn leaves falling slowly in the wind.", "1+1="]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def varied_lm(varied_model_dir):
    from evalkit.models import load_model

    return load_model(str(varied_model_dir))


def run_ok(capsys, model, tasks: str, out_dir: Path, *extra: str) -> dict:
    code, out, err = run_cli(capsys, "run", "--model", str(model), "--tasks", tasks, "--output-dir", str(out_dir),
                             "--no-progress", *extra)
    assert code == 0, err
    for label in ("BLEU-4", "ROUGE-1", "ROUGE-2", "ROUGE-L", "sacreBLEU"):
        assert label in out
    (results_file,) = sorted(out_dir.rglob("results_*.json"))
    results = json.loads(results_file.read_text(encoding="utf-8"))
    results["results_file"] = str(results_file)
    return results


def test_run_writes_scores_and_samples(capsys, varied_model_dir, tmp_path):
    results = run_ok(capsys, varied_model_dir, "alpaca_zh,alpaca_en", tmp_path / "out", "--limit", "3",
                     "--max-new-tokens", "6", "--batch-size", "2")
    assert results["config"]["max_new_tokens"] == 6 and results["config"]["no_chat_template"] is False
    for task, lang in (("alpaca_zh", "zh"), ("alpaca_en", "en")):
        block = results["tasks"][task]
        assert block["type"] == "generation" and block["n"] == 3 and block["chat_template"] is True
        assert block["data"]["indices"] == [[900, 902]] and len(block["data"]["sha256"]) == 64
        assert f"tok:{'zh' if lang == 'zh' else '13a'}" in block["sacrebleu_signature"]
        samples_file = Path(results["results_file"]).parent / block["samples_file"]
        rows = [json.loads(line) for line in samples_file.read_text(encoding="utf-8").splitlines()]
        assert [r["index"] for r in rows] == [900, 901, 902]
        for row in rows:
            assert 1 <= row["new_tokens"] <= 6 and row["finish"] in ("eos", "length") and row["prediction"]
            assert len(row["input_sha256"]) == 64
            assert {k: row[k] for k in METRICS} == sample_scores(row["prediction"], row["reference"])
        for key in METRICS:  # the task score is the mean of the per-sample scores, with a standard error
            assert block[key] == pytest.approx(sum(r[key] for r in rows) / 3)
            assert f"{key}_stderr" in block


def test_same_samples_in_the_same_order_for_two_models(capsys, varied_model_dir, tmp_path):
    other = build_tiny_model(tmp_path / "other-model", seed=7)
    a = run_ok(capsys, varied_model_dir, "alpaca_en", tmp_path / "a", "--limit", "4", "--max-new-tokens", "3")
    b = run_ok(capsys, other, "alpaca_en", tmp_path / "b", "--limit", "4", "--max-new-tokens", "3", "--batch-size", "4")
    da, db = a["tasks"]["alpaca_en"]["data"], b["tasks"]["alpaca_en"]["data"]
    assert da == db
    assert a["tasks"]["alpaca_en"]["prompt_sha256"] == b["tasks"]["alpaca_en"]["prompt_sha256"]
    assert a["model"]["weights_sha256"] != b["model"]["weights_sha256"]


def test_no_chat_template_changes_the_prompt(capsys, tiny_model_dir, tmp_path):
    chat = run_ok(capsys, tiny_model_dir, "alpaca_en", tmp_path / "a", "--limit", "2", "--max-new-tokens", "2")
    plain = run_ok(capsys, tiny_model_dir, "alpaca_en", tmp_path / "b", "--limit", "2", "--max-new-tokens", "2",
                   "--no-chat-template")
    assert plain["tasks"]["alpaca_en"]["chat_template"] is False and plain["config"]["no_chat_template"] is True
    assert plain["tasks"]["alpaca_en"]["prompt_sha256"] != chat["tasks"]["alpaca_en"]["prompt_sha256"]


def test_chat_template_wraps_one_user_turn(tiny_lm):
    text = render_prompt(tiny_lm.tokenizer, "Hello there", chat=True)
    assert "<|im_start|>user\nHello there<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    assert render_prompt(tiny_lm.tokenizer, "Hello there", chat=False) == "Hello there"


def test_left_padding_puts_every_prompt_at_the_right_edge():
    ids, mask = left_padded([[5, 6, 7], [8]], pad_id=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def encode(lm, prompts, max_new=12):
    texts = [render_prompt(lm.tokenizer, p, True) for p in prompts]
    sequences, _ = tokenize_prompts(lm, texts, True, max_new, "error", "test")
    return sequences


def test_batched_outputs_equal_batch_size_one(varied_lm):
    sequences = encode(varied_lm, PROMPTS)
    assert len({len(s) for s in sequences}) > 3  # prompts of different lengths: real left padding
    single, _ = generate(varied_lm, sequences, 12, batch_size=1, progress=False)
    assert all(g.text for g in single)
    for size in (3, "auto"):
        batched, timing = generate(varied_lm, sequences, 12, batch_size=size, progress=False)
        assert [(g.tokens, g.text, g.finish) for g in batched] == [(g.tokens, g.text, g.finish) for g in single]
    assert timing["new_tokens"] == sum(g.new_tokens for g in single)


def test_stop_strings_cut_the_output(varied_lm):
    sequences = encode(varied_lm, PROMPTS[:2], max_new=16)
    free, _ = generate(varied_lm, sequences, 16, progress=False)
    # a stop string taken from inside the free-running output: generation must end there
    text = free[0].text
    stop = text[len(text) // 2: len(text) // 2 + 3]
    assert stop.strip(), text
    stopped, _ = generate(varied_lm, sequences, 16, stop=(stop,), batch_size=2, progress=False)
    assert stopped[0].finish == "stop"
    assert stopped[0].text == text[:text.find(stop)].strip()
    assert stopped[0].new_tokens < free[0].new_tokens and stopped[0].tokens == free[0].tokens[:stopped[0].new_tokens]
    assert stopped[1].text == free[1].text or stopped[1].finish == "stop"


def test_prompt_too_long_is_an_error_or_left_truncated(tiny_lm):
    from evalkit.errors import EvalkitError

    long_prompt = "word " * 600  # the tiny model's context is 512 tokens
    with pytest.raises(EvalkitError, match="do not fit the model's context of 512 tokens"):
        tokenize_prompts(tiny_lm, [long_prompt], False, 8, "error", "t")
    sequences, truncated = tokenize_prompts(tiny_lm, [long_prompt], False, 8, "left", "t")
    assert truncated == [True] and len(sequences[0]) == 512 - 8


def test_run_config_defaults_keep_multiple_choice_unchanged():
    config = RunConfig()
    assert config.max_new_tokens is None and config.no_chat_template is False and config.apply_chat_template is False


def test_task_list_includes_generation_tasks():
    from evalkit.tasks.registry import available_tasks

    names = available_tasks()
    for task in ("alpaca_zh", "alpaca_en", "adgen", "xsum", "cnn_dailymail"):
        assert names[task] == (REPO / "tasks" / f"{task}.yaml").resolve()  # tasks/ links to evalkit/resources/tasks
