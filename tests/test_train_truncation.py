"""Truncation at ``cutoff_len`` (sft): LLaMA-Factory's policy by default (prompt and answer cut in
proportion), evalkit's former one (``keep_prompt``) on request."""

from __future__ import annotations

import pytest

from evalkit.errors import EvalkitError
from evalkit.train.data import infer_seqlen, tokenize_conversation
from evalkit.train.recipe import recipe_from_dict


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def test_infer_seqlen_worked_by_hand():
    assert infer_seqlen(130, 70, 100) == (65, 35)  # both long: answer gets int(100 * 70/200), prompt the rest
    assert infer_seqlen(30, 300, 100) == (30, 70)  # short prompt kept whole, answer fills the rest
    assert infer_seqlen(300, 20, 100) == (80, 20)  # short answer kept whole, prompt cut to 80
    assert infer_seqlen(40, 30, 100) == (40, 30)  # fits: nothing cut


LONG = [{"role": "user", "content": "Summarise: " + " ".join(f"word{i}" for i in range(60))},
        {"role": "assistant", "content": " ".join(f"answer{i}" for i in range(40))}]


def parts(example):
    labels = example["labels"]
    prompt = [i for i, label in zip(example["input_ids"], labels) if label == -100]
    answer = [label for label in labels if label != -100]
    return prompt, answer


def test_too_long_example_is_cut_like_llamafactory(tokenizer):
    whole_prompt, whole_answer = parts(tokenize_conversation(LONG, tokenizer, cutoff_len=10_000))
    p, a = len(whole_prompt), len(whole_answer)
    assert 2 * p > 96 and 2 * a > 96  # both halves are long: LLaMA-Factory cuts both
    example = tokenize_conversation(LONG, tokenizer, cutoff_len=96)
    prompt, answer = parts(example)
    assert len(example["input_ids"]) == 96
    assert len(answer) == int(96 * a / (p + a)) and len(prompt) == 96 - len(answer)
    assert prompt == whole_prompt[:len(prompt)] and answer == whole_answer[:len(answer)]  # each cut at its end
    # the prompt lost its end, the "<|im_start|>assistant" header included (as in LLaMA-Factory)
    assert not tokenizer.decode(prompt).rstrip().endswith("assistant")
    assert example["input_ids"][:len(prompt)] == prompt  # prompt first, then the answer


def test_keep_prompt_cuts_only_the_answer(tokenizer):
    whole_prompt, whole_answer = parts(tokenize_conversation(LONG, tokenizer, cutoff_len=10_000))
    prompt, answer = parts(tokenize_conversation(LONG, tokenizer, cutoff_len=len(whole_prompt) + 5,
                                                 truncation="keep_prompt"))
    assert prompt == whole_prompt and answer == whole_answer[:5]
    assert tokenize_conversation(LONG, tokenizer, cutoff_len=len(whole_prompt), truncation="keep_prompt") is None


def test_unknown_truncation_is_one_clear_error():
    with pytest.raises(EvalkitError, match="truncation 'middle'.*llamafactory, keep_prompt"):
        recipe_from_dict({"truncation": "middle"}, "r.yaml")
