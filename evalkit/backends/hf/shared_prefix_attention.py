"""Attention over a shared prefix without copying it per row (CPU), in the manner of Hydragen.

A batch of question suffixes all attend to the same prefix keys and values. Through a KV cache
that means, in every layer, concatenating the prefix to each row's keys, repeating the key/value
heads for grouped-query attention, and running masked attention per row: copies of the prefix
and many small attention blocks. Here attention is split exactly in two (Juravsky et al. 2024,
"Hydragen", arXiv:2402.05099):

* prefix part: the queries of every token and every head of a key/value group are stacked and
  attend to the one un-copied prefix (one large, unmasked attention per key/value head);
* suffix part: each suffix's queries attend causally to its own keys;

and the two softmax-weighted sums are merged with their log-sum-exps. Same result up to fp32
rounding; tested against the full-prompt path (tests/test_prefix_reuse.py).

Hand-written because neither transformers nor torch offers shared-prefix batching on CPU; it runs
as a registered transformers attention function, so the model's own projections, rotary
embeddings and norms (and PEFT adapters on them) stay untouched.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

NAME = "evalkit_shared_prefix"
# Decoders whose attention is plain softmax attention over rotary q/k (no soft-capping, no
# attention sinks); sliding windows are checked per call in ``supports_shared_prefix_attention``.
PLAIN_ATTENTION = {"llama", "mistral", "qwen2", "qwen3", "gemma3_text"}
_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def supports_shared_prefix_attention(model, total_length: int, device: str) -> bool:
    """Whether ``shared_prefix_attention`` computes exactly what the model's own attention would."""
    config = getattr(model, "config", None)
    if config is None or _FLASH_CPU is None or not str(device).startswith("cpu"):
        return False
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text, "model_type", None) not in PLAIN_ATTENTION:
        return False
    if getattr(text, "attn_logit_softcapping", None) or getattr(text, "attention_dropout", 0.0):
        return False
    window = getattr(text, "sliding_window", None) if getattr(text, "use_sliding_window", True) else None
    return window is None or total_length <= window


@contextmanager
def attention_implementation(model, name: str):
    """Run ``model``'s attention through the registered implementation ``name`` inside the block."""
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = before


def shared_prefix_attention(model):
    """Run ``model``'s attention through ``attention_with_shared_prefix`` inside the block."""
    return attention_implementation(model, NAME)


@dataclass
class PackedSuffixes:
    """Suffixes concatenated into one padding-free sequence (batch 1).

    The projections and the MLP, nearly all of the FLOPs, then run on real tokens only: right
    padding a bucket of suffixes costs ~7% extra at batch 8 on 5-shot CMMLU, and closing buckets
    early to bound it makes the matrices smaller. The suffix-to-suffix attention runs per suffix.
    """

    spans: list[tuple[int, int]]  # [start, end) of each suffix in the packed sequence
    columns: torch.Tensor  # (tokens,) each token's place within its suffix
    last: torch.Tensor  # (rows,) the packed index of each suffix's last token

    @classmethod
    def of(cls, lengths: list[int], device) -> "PackedSuffixes":
        sizes = torch.tensor(lengths, dtype=torch.long)
        ends = torch.cumsum(sizes, 0)
        starts = ends - sizes
        columns = torch.cat([torch.arange(n) for n in lengths])
        return cls(list(zip(starts.tolist(), ends.tolist())), columns.to(device), (ends - 1).to(device))

    def positions(self, offset: int) -> torch.Tensor:
        return (self.columns + offset).unsqueeze(0)


def attention_with_shared_prefix(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                                 shared_prefix=None, packed_suffixes=None, **kwargs):
    """Packed suffixes' ``query`` (1, heads, tokens, dim) against the prefix and their own ``key``/``value``.

    ``shared_prefix`` is the batch-1 prefix cache; ``key``/``value`` are the suffixes' own (no cache
    is passed to the forward, so nothing is concatenated); ``packed_suffixes`` says where each suffix
    lies. Returns (1, tokens, heads, dim) as transformers' attention functions do.
    """
    prefix = shared_prefix.layers[module.layer_idx]
    _, heads, total, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    # prefix: all tokens' queries of key/value head h are one sequence (query head h uses kv head h // group)
    stacked = query.reshape(1, kv_heads, group * total, dim)
    out_p, lse_p = _FLASH_CPU(stacked, prefix.keys, prefix.values, 0.0, False, attn_mask=None, scale=scaling)[:2]
    out_p, lse_p = out_p.reshape(heads, total, dim), lse_p.reshape(heads, total)
    # suffix: causal within each suffix, one slice of the packed sequence at a time (no padding, no copies)
    key, value = key.repeat_interleave(group, dim=1), value.repeat_interleave(group, dim=1)
    out_s, lse_s = torch.empty_like(out_p), torch.empty_like(lse_p)
    for start, end in packed_suffixes.spans:
        part = _FLASH_CPU(query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], 0.0, True,
                          attn_mask=None, scale=scaling)
        out_s[:, start:end], lse_s[:, start:end] = part[0][0], part[1][0]
    lse = torch.logaddexp(lse_p, lse_s)
    out = out_p * torch.exp(lse_p - lse).unsqueeze(-1) + out_s * torch.exp(lse_s - lse).unsqueeze(-1)
    return out.transpose(0, 1).unsqueeze(0), None


def _no_mask(*args, **kwargs):
    return None  # the suffix part is causal by construction; the prefix part needs no mask


AttentionInterface.register(NAME, attention_with_shared_prefix)
AttentionMaskInterface.register(NAME, _no_mask)
