"""Shared-prefix reuse: compute a subject's few-shot prefix once, then only each question's suffix.

In 5-shot MMLU/CMMLU/C-Eval every question of a subject starts with the same header and
exemplars (hundreds of tokens) and differs only in its last ~100. The prefix's key/value cache
is computed once (batch 1), repeated across each batch, and the right-padded suffixes run on
top of it with positions continuing after the prefix. Nothing is approximated: the suffix
tokens see exactly the keys and values they would see in the full prompt, so the logits match
the full-prompt path up to fp32 rounding (different GEMM shapes).

The prefix is the longest common prefix of the subject's *full-prompt token sequences*, not the
tokenisation of the prefix text: BPE merges across the prefix/question boundary (SmolLM2 encodes
a trailing "\\n\\n" as one token but as two before more text), so only shared tokens are shared.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from evalkit.backends.hf.batching import logits_only_at, right_padded
from evalkit.backends.hf.kv_cache import CACHE_KWARG
from evalkit.backends.hf.shared_prefix_attention import (PackedSuffixes, shared_prefix_attention,
                                                     supports_shared_prefix_attention)


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens every sequence starts with, leaving at least one token of each to score."""
    if not sequences:
        return 0
    length = min(len(s) for s in sequences) - 1
    if length <= 0:
        return 0
    # One tensor comparison instead of a Python loop over tokens.
    block = torch.tensor([list(s[:length]) for s in sequences], dtype=torch.long)
    differs = (block != block[0]).any(dim=0).nonzero()
    return int(differs[0]) if len(differs) else length


def supports_prefix_reuse(model) -> bool:
    """False for models whose forward already owns ``past_key_values`` (PEFT prompt learning)."""
    if getattr(model.config, "is_encoder_decoder", False):
        return False
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and getattr(peft_config, "is_prompt_learning", False):
        return False
    return True


@torch.inference_mode()
def prefix_cache(model, prefix_ids: Sequence[int], device: str):
    """The key/value cache of ``prefix_ids`` (batch 1), computed once per subject."""
    ids = torch.tensor([list(prefix_ids)], dtype=torch.long, device=device)
    # The logits are not needed, only the cache: the LM head for one position and one token.
    with logits_only_at(model, torch.tensor([ids.shape[1] - 1]), columns=torch.tensor([0])):
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
    return out.past_key_values


@torch.inference_mode()
def suffix_last_logits(model, cache, prefix_length: int, suffixes: list[list[int]], pad_id: int,
                       device: str, columns: torch.Tensor | None = None) -> torch.Tensor:
    """Logits at each suffix's last real token, the suffixes batched on top of the shared ``cache``.

    ``cache`` is not modified. On CPU, for plain-attention decoders, the suffixes are packed into
    one padding-free sequence and attend to the cache through ``shared_prefix_attention`` without
    copying it; otherwise they are right-padded and forward appends to the cache it is given, so
    each batch gets its own view of it, repeated to the batch size (see ``batch_view``).
    ``columns``: only these tokens' logits (see ``logits_only_at``).
    """
    lengths = [len(s) for s in suffixes]
    if supports_shared_prefix_attention(model, prefix_length + max(lengths), device):
        # evalkit/backends/hf/shared_prefix_attention.py: the prefix stays one un-copied batch-1 cache
        packed = PackedSuffixes.of(lengths, device)
        ids = torch.tensor([[token for s in suffixes for token in s]], dtype=torch.long, device=device)
        with shared_prefix_attention(model), logits_only_at(model, packed.last, columns, packed=True):
            out = model(input_ids=ids, position_ids=packed.positions(prefix_length), use_cache=False,
                        shared_prefix=cache, packed_suffixes=packed)
        return out.logits[:, -1, :]
    ids, suffix_mask = right_padded(suffixes, pad_id, device)
    rows, width = ids.shape
    positions = (torch.arange(width, device=device) + prefix_length).unsqueeze(0).expand(rows, -1)
    last = suffix_mask.sum(dim=1) - 1
    mask = torch.cat([torch.ones((rows, prefix_length), dtype=suffix_mask.dtype, device=device), suffix_mask], dim=1)
    with logits_only_at(model, last, columns):
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    **{CACHE_KWARG: batch_view(cache, rows)})
    return out.logits[:, -1, :]


def batch_view(cache, rows: int):
    """A copy of the batch-1 ``cache`` holding ``rows`` rows, without copying the keys and values.

    Plain dynamic layers only ever replace their tensors (``torch.cat``), never write into them,
    so the repeated rows can be broadcast views of the one prefix: the forward's concatenation is
    then the only copy, instead of a deep copy, a repeat and the concatenation. Other layer types
    (quantized, indexed, linear-attention caches) get the public ``batch_repeat_interleave``.
    """
    layers = getattr(cache, "layers", None)
    if layers and not getattr(cache, "offloading", False) \
            and all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in layers):
        view = copy.copy(cache)
        view.layers = [copy.copy(layer) for layer in layers]
        for layer in view.layers:
            if layer.is_initialized:
                layer.keys = layer.keys.expand(rows, -1, -1, -1)
                layer.values = layer.values.expand(rows, -1, -1, -1)
        return view
    view = copy.deepcopy(cache)
    view.batch_repeat_interleave(rows)
    return view
