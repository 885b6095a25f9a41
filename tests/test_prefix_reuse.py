"""Prefix reuse (a subject's few-shot prefix computed once) must score exactly like the full prompt.

The full-prompt path is the reference: same predictions, probabilities within 1e-5 (fp32
rounding from different GEMM shapes is ~5e-6 even between two batch sizes of the full path).
"""

from __future__ import annotations

import copy

import pytest
import torch

from evalkit.requests import build_requests, choice_targets
from evalkit.backends.hf.multiple_choice import prefix_groups, score_multiple_choice, tokenize_prompts
from evalkit.backends.hf.batching import length_sorted_batches, logits_only_at
from evalkit.backends.hf.prefix_cache import (common_prefix_length, prefix_cache, suffix_last_logits,
                                          supports_prefix_reuse)
from evalkit.tasks.mc_data import load_split
from evalkit.tasks.registry import resolve_tasks

TOLERANCE = 1e-5


def cmmlu_requests(tokenizer, subjects, per_subject, shots=5, style="llamafactory", chat=False):
    spec = resolve_tasks("cmmlu")[0].spec
    requests = []
    for subject in subjects:
        questions = load_split(spec, subject, "test")[:per_subject]
        exemplars = load_split(spec, subject, "dev")[:shots]
        requests += build_requests(spec, style, subject, questions, exemplars, tokenizer, chat=chat)
    return requests, choice_targets(spec, style)


def assert_same_scores(reference, scores):
    assert [s.request for s in scores] == [r.request for r in reference]
    assert [s.prediction for s in scores] == [r.prediction for r in reference]
    worst = max(abs(a - b) for r, s in zip(reference, scores) for a, b in zip(r.probabilities, s.probabilities))
    assert worst < TOLERANCE, worst


def count_computed_tokens(model):
    """A forward pre-hook on the input embedding that adds up the tokens each call computes."""
    seen = []
    handle = model.get_input_embeddings().register_forward_pre_hook(lambda _m, args: seen.append(args[0].numel()))
    return seen, handle


def test_common_prefix_length_leaves_a_token_to_score():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # the shorter one keeps its last token
    assert common_prefix_length([[7, 2], [1, 2]]) == 0
    assert common_prefix_length([[1, 2, 3]]) == 2


def test_length_buckets_bound_padding():
    lengths = [200, 190, 185, 150, 140, 100, 98, 97, 96, 60, 59, 20]
    batches = list(length_sorted_batches(lengths, 4, max_padding=0.1))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 4
        padded = len(batch) * max(lengths[i] for i in batch)
        assert padded <= 1.1 * sum(lengths[i] for i in batch)
    assert any(len(b) > 1 for b in batches)
    # Without the bound only the batch size limits a batch.
    assert [len(b) for b in length_sorted_batches(lengths, 4)] == [4, 4, 4]


@pytest.fixture(scope="module")
def tiny_long(tmp_path_factory):
    """The conftest tiny Llama with a 2048-token context, so 5-shot CMMLU prompts fit."""
    from evalkit.models import load_model
    from tests.conftest import build_tiny_model

    return load_model(str(build_tiny_model(tmp_path_factory.mktemp("tiny-2k"), seed=3, context=2048)))


@pytest.fixture(params=["shared-prefix attention", "repeated cache"])
def attention_path(request, monkeypatch, tiny_long):
    """Both ways suffixes attend to the prefix: shared-prefix attention (plain decoders on CPU, the
    default) and the repeated KV cache (every other model, CUDA)."""
    import evalkit.backends.hf.prefix_cache as prefix_module

    if request.param == "repeated cache":
        monkeypatch.setattr(prefix_module, "supports_shared_prefix_attention", lambda *args: False)
    else:
        assert prefix_module.supports_shared_prefix_attention(tiny_long.model, 1024, "cpu")
    return request.param


@pytest.mark.parametrize("chat", [False, True])
def test_tiny_model_prefix_reuse_matches_full_prompt(tiny_long, chat, attention_path):
    requests, targets = cmmlu_requests(tiny_long.tokenizer, ["agronomy", "anatomy", "arts"], 5, chat=chat)
    sequences, truncated = tokenize_prompts(tiny_long, requests, "error", "cmmlu")
    groups = prefix_groups(requests, sequences, truncated)
    assert sorted(len(m) for _, m in groups) == [5, 5, 5]
    # The shared prefix is the token-level common prefix: at least the exemplars, never a whole prompt.
    assert all(100 < shared < min(len(sequences[i]) for i in members) for shared, members in groups)
    for batch_size in (1, 8):
        full = score_multiple_choice(tiny_long, requests, targets, batch_size, progress=False, reuse_prefix=False)
        seen, handle = count_computed_tokens(tiny_long.model)
        try:
            reused = score_multiple_choice(tiny_long, requests, targets, batch_size, progress=False, reuse_prefix=True)
        finally:
            handle.remove()
        assert_same_scores(full, reused)
        # Each prefix computed once, each suffix once (plus right padding within a batch).
        shared = sum(p for p, _ in groups)
        assert sum(seen) < sum(len(s) for s in sequences) - 3 * shared


class _ScaledHead(torch.nn.Linear):
    """A head that is not a plain nn.Linear (as a PEFT-wrapped or custom head would be)."""

    def forward(self, hidden):
        return 2 * super().forward(hidden)


@pytest.mark.parametrize("head_type", ["linear", "other"])
def test_logits_only_at_columns_equal_the_full_head(tiny_long, head_type):
    """Narrowing the head to the letters' rows gives the full head's logits at those columns, and
    leaves the head as it was; a head that is not a plain Linear computes everything and is sliced."""
    model = copy.deepcopy(tiny_long.model)
    if head_type == "other":
        old = model.get_output_embeddings()
        head = _ScaledHead(old.in_features, old.out_features, bias=False)
        head.weight = old.weight
        model.set_output_embeddings(head)
    head = model.get_output_embeddings()
    ids = torch.tensor([[5, 17, 300, 42, 9], [8, 1000, 3, 77, 12]])
    last = torch.tensor([4, 2])
    columns = torch.tensor([330, 29, 4000, 7])
    with torch.inference_mode():
        with logits_only_at(model, last):
            full = model(input_ids=ids).logits[:, -1, :]
        with logits_only_at(model, last, columns=columns):
            narrowed = model(input_ids=ids).logits[:, -1, :]
        after = model(input_ids=ids).logits
    assert narrowed.shape == (2, 4)
    assert torch.allclose(narrowed, full[:, columns], atol=1e-6)
    assert "forward" not in vars(head) and after.shape == (2, 5, model.config.vocab_size)


def test_prefix_cache_is_left_as_it_was(tiny_long, attention_path):
    """Batches read the prefix cache (shared-prefix attention or a broadcast view); it must not change."""
    requests, _ = cmmlu_requests(tiny_long.tokenizer, ["agronomy"], 3)
    sequences, _ = tokenize_prompts(tiny_long, requests, "error", "cmmlu")
    shared = common_prefix_length(sequences)
    cache = prefix_cache(tiny_long.model, sequences[0][:shared], "cpu")
    keys = [layer.keys.clone() for layer in cache.layers]
    pad = tiny_long.tokenizer.pad_token_id
    first = suffix_last_logits(tiny_long.model, cache, shared, [s[shared:] for s in sequences], pad, "cpu")
    again = suffix_last_logits(tiny_long.model, cache, shared, [s[shared:] for s in sequences[:1]], pad, "cpu")
    assert cache.get_seq_length() == shared
    assert all(torch.equal(k, layer.keys) for k, layer in zip(keys, cache.layers))
    assert torch.allclose(first[0], again[0], atol=1e-5)


def test_truncated_prompts_fall_back_to_the_full_path(tiny_lm):
    """With a 512-token context some 5-shot prompts are left-truncated: those lost part of the prefix."""
    requests, targets = cmmlu_requests(tiny_lm.tokenizer, ["agronomy", "anatomy"], 4)
    sequences, truncated = tokenize_prompts(tiny_lm, requests, "left", "cmmlu")
    assert any(truncated) and not all(truncated)
    grouped = {i for _, members in prefix_groups(requests, sequences, truncated) for i in members}
    assert not grouped & {i for i, t in enumerate(truncated) if t}
    full = score_multiple_choice(tiny_lm, requests, targets, 4, "left", progress=False, reuse_prefix=False)
    reused = score_multiple_choice(tiny_lm, requests, targets, 4, "left", progress=False, reuse_prefix=True)
    assert_same_scores(full, reused)
    assert [s.truncated for s in reused] == truncated


def test_peft_adapters(tiny_long):
    """LoRA keeps prefix reuse (same scores); prefix tuning owns past_key_values, so it falls back."""
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model

    from evalkit.models.loader import LoadedModel

    requests, targets = cmmlu_requests(tiny_long.tokenizer, ["agronomy"], 4)
    for config, reusable in ((LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False), True),
                             (PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4), False)):
        torch.manual_seed(0)
        model = get_peft_model(copy.deepcopy(tiny_long.model), config).eval()
        assert supports_prefix_reuse(model) is reusable
        lm = LoadedModel(model, tiny_long.tokenizer, {}, "cpu", "float32", 2048)
        full = score_multiple_choice(lm, requests, targets, 4, progress=False, reuse_prefix=False)
        reused = score_multiple_choice(lm, requests, targets, 4, progress=False, reuse_prefix=True)
        assert_same_scores(full, reused)


def test_real_smollm2_cmmlu_5shot_prefix_reuse_matches_full_prompt(smollm2):
    """The real embedded SmolLM2, real CMMLU 5-shot prompts, batch sizes 1 and 8."""
    requests, targets = cmmlu_requests(smollm2.tokenizer, ["agronomy", "college_medicine"], 3)
    full = score_multiple_choice(smollm2, requests, targets, 1, progress=False, reuse_prefix=False)
    for batch_size in (1, 8):
        reused = score_multiple_choice(smollm2, requests, targets, batch_size, progress=False, reuse_prefix=True)
        assert_same_scores(full, reused)
    # Not a uniform tie that would hide a broken cache: the real model leans (uniform is 0.25), and
    # its leaning differs from question to question.
    assert max(max(s.probabilities) for s in full) > 0.3
    assert len({tuple(round(p, 3) for p in s.probabilities) for s in full}) == len(full)
