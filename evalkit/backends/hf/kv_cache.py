"""A KV cache for ``generate`` that appends in place instead of concatenating.

Why by hand: transformers' ``DynamicLayer`` does ``torch.cat([keys, new])`` every step, copying every
layer's whole cache per generated token, so a step costs more the longer the context: a SmolLM2
decoding step at batch 8 on 2 CPU cores took 58.6 ms with it and 54.6 ms with this layer after a
200-token prompt, 141 ms and 105 ms after a 1,500-token one (docs/performance.md). ``StaticCache``
avoids the copy but attends over the whole allocated length (measured 0.85-0.91x of the dynamic cache
here). This layer keeps one buffer per layer, sized for the
prompt plus the new tokens, and hands attention a view of the filled part: same tensors, same
attention, no copies. Anything that replaces the layer's tensors (beam reordering, batch selection)
makes the next update start a fresh buffer from them.
"""

from __future__ import annotations

import torch
import transformers
from transformers.cache_utils import DynamicCache, DynamicLayer

# The keyword generate() and forward() take a cache by: transformers 5.24 renamed past_key_values (deprecated).
CACHE_KWARG = "cache" if tuple(int(p) for p in transformers.__version__.split(".")[:2]) >= (5, 24) else "past_key_values"


class InPlaceLayer(DynamicLayer):
    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        filled, new = self.get_seq_length(), key_states.shape[-2]
        buffer = self._key_buffer
        if (buffer is None or self.keys.data_ptr() != buffer.data_ptr() or self.keys.shape[0] != buffer.shape[0]
                or filled + new > buffer.shape[-2]):
            size = list(key_states.shape)
            size[-2] = max(self.capacity, 2 * (filled + new))
            keys, values = key_states.new_empty(size), value_states.new_empty(size)
            if filled:
                keys[..., :filled, :] = self.keys
                values[..., :filled, :] = self.values
            self._key_buffer, self._value_buffer = keys, values
        self._key_buffer[..., filled:filled + new, :] = key_states
        self._value_buffer[..., filled:filled + new, :] = value_states
        self.keys = self._key_buffer[..., :filled + new, :]
        self.values = self._value_buffer[..., :filled + new, :]
        return self.keys, self.values


def in_place_cache(config, capacity: int) -> DynamicCache:
    """A DynamicCache for ``config`` whose full-attention layers append in place (sliding-window and other
    layer kinds stay transformers' own)."""
    cache = DynamicCache(config=config)
    cache.layers = [InPlaceLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
