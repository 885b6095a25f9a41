"""Shared batching helpers: length-sorted batches, right padding, batch-size choice."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import psutil
import torch

from evalkit.errors import EvalkitError
from evalkit.models.packed_linear import PackedLinear

MAX_AUTO_BATCH = 64


def length_sorted_batches(lengths: Sequence[int], batch_size: int,
                          max_padding: float | None = None) -> Iterator[list[int]]:
    """Indices grouped longest first, so similar lengths share a batch and little padding is wasted.

    With ``max_padding`` a batch also closes before its pad tokens would exceed that fraction of
    its real tokens (length buckets): pads cost as much compute as real tokens, and few-shot
    question suffixes vary a lot in length (at batch 8 unbounded padding adds ~30%).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batch: list[int] = []
    real = 0
    for i in order:
        if batch:
            padded = (len(batch) + 1) * lengths[batch[0]]  # batch[0] is the longest
            too_padded = max_padding is not None and padded > (1 + max_padding) * (real + lengths[i])
            if len(batch) == batch_size or too_padded:
                yield batch
                batch, real = [], 0
        batch.append(i)
        real += lengths[i]
    if batch:
        yield batch


def padded(sequences: list[list[int]], pad_id: int, device: str, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of the sequences padded to the longest, on the left or the right."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids.to(device), mask.to(device)


def right_padded(sequences: list[list[int]], pad_id: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Right padding: real tokens keep positions 0..n-1 and, under the causal mask, never see a pad."""
    return padded(sequences, pad_id, device)


def auto_batch_size(model, longest: int, device: str, cached: int = 0) -> int:
    """Largest batch to try: on CUDA the cap, halved by ``HalvingOnOom`` until it fits; on CPU an estimate.

    ``longest`` is the longest sequence computed, ``cached`` the prefix tokens it attends to as
    well (prefix reuse). The batch size never changes predictions, only speed and memory.
    """
    if device.startswith("cuda"):
        return MAX_AUTO_BATCH
    config = model.config
    hidden = getattr(config, "hidden_size", 1024)
    inner = getattr(config, "intermediate_size", 4 * hidden)
    heads = getattr(config, "num_attention_heads", 16)
    layers = getattr(config, "num_hidden_layers", 24)
    kv_heads = getattr(config, "num_key_value_heads", heads) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    keys = cached + longest
    # Per sequence (fp32): one layer's live activations (MLP, residual streams, attention scores)
    # plus every layer's keys and values, which a cached prefix is repeated into.
    per_sequence = 4 * (longest * (3 * inner + 6 * hidden) + heads * longest * keys + 2 * layers * kv_heads * head_dim * keys)
    budget = psutil.virtual_memory().available * 0.25
    return max(1, min(MAX_AUTO_BATCH, int(budget // max(per_sequence, 1))))


class HalvingOnOom:
    """Run batches; on CUDA out-of-memory split the batch and keep the halved size for what follows.

    Only the grouping changes, never which rows are scored or how, so results do not depend on it.
    """

    def __init__(self):
        self.cap: int | None = None

    def run(self, batches: list[list[int]], forward) -> Iterator[tuple[list[int], object]]:
        pending = list(batches)
        while pending:
            batch = pending.pop(0)
            if self.cap is not None and len(batch) > self.cap:
                pending[:0] = [batch[: self.cap], batch[self.cap:]]
                continue
            try:
                result = forward(batch)
            except torch.cuda.OutOfMemoryError:
                if len(batch) == 1:
                    raise EvalkitError("out of GPU memory at batch size 1; use a smaller model, "
                                       "lower --num-fewshot or use --device cpu") from None
                torch.cuda.empty_cache()
                self.cap = len(batch) // 2
                pending.insert(0, batch)
                continue
            yield batch, result


@contextmanager
def logits_only_at(model, positions: torch.Tensor, columns: torch.Tensor | None = None, packed: bool = False):
    """Make the LM head compute logits only at ``positions`` (one per row), and only for ``columns``.

    The full vocabulary projection at every position costs ~20% of a small model's FLOPs and
    B x L x V floats of memory; we need one row per sequence. A pre-hook on the output embedding
    keeps every model-specific step after the head (e.g. logit soft-capping) and works through
    PEFT wrappers, where calling the decoder directly would skip prompt-learning adapters.
    ``packed``: the rows are concatenated in one sequence (batch 1) and ``positions`` index it.

    ``columns`` (token ids): the logits come out with only those columns, in that order. Letter
    scoring needs four of the vocabulary's logits; a plain ``nn.Linear`` head then multiplies by
    four weight rows instead of reading all of them (49,152 x 576 fp32 for SmolLM2: ~17 ms a batch
    on 2 cores, memory-bound, ~1.5% of a 5-shot run). Any other head computes everything and the
    columns are picked from its output. Element-wise steps after the head are unaffected.
    """
    head = model.get_output_embeddings()

    def pick(_module, args):
        hidden = args[0]
        where = positions.to(hidden.device)
        picked = hidden[0, where] if packed else hidden[torch.arange(hidden.shape[0], device=hidden.device), where]
        return (picked.unsqueeze(1), *args[1:])

    handles = [head.register_forward_pre_hook(pick)]
    narrowed = False
    if columns is not None:
        if type(head) in (torch.nn.Linear, PackedLinear):
            weight = head.weight[columns.to(head.weight.device)]
            bias = None if head.bias is None else head.bias[columns.to(head.bias.device)]
            head.forward = lambda hidden: torch.nn.functional.linear(hidden, weight, bias)
            narrowed = True
        else:
            handles.append(head.register_forward_hook(lambda _m, _a, out: out[..., columns.to(out.device)]))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        if narrowed:
            del head.forward  # back to the class's forward
