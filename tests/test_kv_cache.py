"""The in-place KV cache (evalkit/backends/hf/kv_cache.py) holds what transformers' concatenating cache holds,
through growth past its capacity, batch selection and cropping, and generates the same tokens."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from evalkit.backends.hf.kv_cache import CACHE_KWARG, InPlaceLayer, in_place_cache


def step(*layers, batch=3, length=1):
    keys, values = torch.randn(batch, 2, length, 4), torch.randn(batch, 2, length, 4)
    return [layer.update(keys, values) for layer in layers]


def test_in_place_layer_matches_the_concatenating_layer():
    torch.manual_seed(0)
    reference, in_place = DynamicLayer(), InPlaceLayer(capacity=6)
    for length in (4, 1, 1, 3, 1):  # 10 tokens: past the capacity of 6, so the buffer is replaced
        (want_k, want_v), (got_k, got_v) = step(reference, in_place, length=length)
        assert torch.equal(got_k, want_k) and torch.equal(got_v, want_v)
    index = torch.tensor([2, 0])
    reference.batch_select_indices(index)
    in_place.batch_select_indices(index)
    (want_k, _), (got_k, _) = step(reference, in_place, batch=2)
    assert torch.equal(got_k, want_k)
    reference.crop(-3)
    in_place.crop(-3)
    (want_k, want_v), (got_k, got_v) = step(reference, in_place, batch=2, length=2)
    assert got_k.shape == (2, 2, 10, 4) and torch.equal(got_k, want_k) and torch.equal(got_v, want_v)


def test_generation_with_the_in_place_cache_equals_transformers_default(tiny_lm):
    ids = torch.tensor([[0, 0, 5, 17, 300, 42], [8, 1000, 3, 77, 12, 9]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    common = dict(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False, num_beams=1,
                  pad_token_id=tiny_lm.tokenizer.pad_token_id)
    with torch.inference_mode():
        default = tiny_lm.model.generate(**common)
        cache = in_place_cache(tiny_lm.model.config, ids.shape[1] + 12)
        in_place = tiny_lm.model.generate(**common, **{CACHE_KWARG: cache})
    assert torch.equal(in_place, default)
    assert all(type(layer) is InPlaceLayer for layer in cache.layers)
