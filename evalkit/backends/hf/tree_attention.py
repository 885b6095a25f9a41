"""Attention for cloze questions packed as trees (CPU): many questions in one forward pass, each question's
context once and its options branching from it, over the subject's un-copied prefix cache.

Per question the packed tokens are its context (after the subject's shared prefix) and then each option's
continuation but its last token. A context token attends causally to the context; an option token to the
whole context and causally to its own option, never to another option. Attention is split exactly as in
shared_prefix_attention.py (Hydragen): the question's queries against the prefix (unmasked) and against its
own tokens (the tree mask), merged by their log-sum-exps.

Every attention call covers one question only and the linear layers compute each row alone (evalkit's panel
kernel), so a question's numbers do not depend on the others packed with it: batch-size invariant, bit for bit.
Small forward passes on CPU are bound by reading the weights (~0.5 GB for SmolLM2-135M in fp32), which is
why questions are packed together rather than run one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from evalkit.backends.hf.shared_prefix_attention import _FLASH_CPU, attention_implementation

NAME = "evalkit_cloze_tree"


@dataclass
class QuestionPack:
    """Where each question's tokens lie in the packed sequence (batch 1)."""

    spans: list[tuple[int, int]]  # [start, end) of each question: its context, then its options
    masks: list[torch.Tensor]  # per question (1, 1, tokens, tokens): 0 where attention is allowed, -inf elsewhere
    positions: torch.Tensor  # (1, total) each token's position in its own full sequence
    heads: torch.Tensor  # (rows,) packed indices whose logits are needed: per question its last context token, then its option tokens
    options: list[list[list[int]]]  # per question, per option: its rows in ``heads`` (the shared one, then its own)

    @classmethod
    def of(cls, contexts: list[int], options: list[list[int]], offset: int, device) -> "QuestionPack":
        """``contexts[q]`` context tokens and ``options[q][j]`` option tokens per question, after ``offset``
        prefix tokens."""
        spans, masks, positions, heads, rows = [], [], [], [], []
        start = 0
        for context, lengths in zip(contexts, options):
            size = context + sum(lengths)
            allowed = torch.zeros((size, size), dtype=torch.bool)
            allowed[:context, :context] = torch.ones((context, context), dtype=torch.bool).tril()
            positions += range(offset, offset + context)
            head = len(heads)
            heads.append(start + context - 1)
            own, at = [], context
            for n in lengths:
                allowed[at:at + n, :context] = True
                allowed[at:at + n, at:at + n] = torch.ones((n, n), dtype=torch.bool).tril()
                positions += range(offset + context, offset + context + n)
                # the option's rows: the context's last token predicts its first token, its own tokens the rest
                own.append([head, *range(len(heads), len(heads) + n)])
                heads += range(start + at, start + at + n)
                at += n
            rows.append(own)
            mask = torch.zeros((size, size)).masked_fill_(~allowed, float("-inf"))
            masks.append(mask.view(1, 1, size, size).to(device))
            spans.append((start, start + size))
            start += size
        return cls(spans, masks, torch.tensor([positions], device=device), torch.tensor(heads, device=device), rows)


def tree_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, shared_prefix=None,
                   question_pack=None, **kwargs):
    """Packed questions' ``query`` (1, heads, tokens, dim) against the prefix cache and their own tree."""
    _, heads, total, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    prefix = shared_prefix.layers[module.layer_idx] if shared_prefix is not None else None
    key, value = key.repeat_interleave(group, dim=1), value.repeat_interleave(group, dim=1)
    out = torch.empty((heads, total, dim), dtype=query.dtype, device=query.device)
    for (start, end), mask in zip(question_pack.spans, question_pack.masks):
        q = query[:, :, start:end]
        own, own_lse = _FLASH_CPU(q, key[:, :, start:end], value[:, :, start:end], 0.0, False, attn_mask=mask,
                                  scale=scaling)[:2]
        own, own_lse = own[0], own_lse[0]
        if prefix is None:
            out[:, start:end] = own
            continue
        # the prefix: one question's queries of key/value head h stacked (query head h uses kv head h // group)
        stacked = q.reshape(1, kv_heads, group * (end - start), dim)
        pre, pre_lse = _FLASH_CPU(stacked, prefix.keys, prefix.values, 0.0, False, attn_mask=None, scale=scaling)[:2]
        pre, pre_lse = pre.reshape(heads, end - start, dim), pre_lse.reshape(heads, end - start)
        lse = torch.logaddexp(pre_lse, own_lse)
        out[:, start:end] = pre * torch.exp(pre_lse - lse).unsqueeze(-1) + own * torch.exp(own_lse - lse).unsqueeze(-1)
    return out.transpose(0, 1).unsqueeze(0), None


def packed_questions(model):
    """Run ``model``'s attention through ``tree_attention`` inside the block."""
    return attention_implementation(model, NAME)


def _no_mask(*args, **kwargs):
    return None  # each question's tree mask is applied inside tree_attention


AttentionInterface.register(NAME, tree_attention)
AttentionMaskInterface.register(NAME, _no_mask)
