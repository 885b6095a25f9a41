"""fp32 linear layers on CPU through oneDNN, each weight packed once into the kernel's blocked layout.

Why by hand: eager ``F.linear`` on CPU calls MKL's sgemm, which re-packs the weight on every call and,
on this project's AMD Zen 4 machine, runs the row counts of decoding (8-32 rows) at 70-125 GFLOP/s.
oneDNN with a prepacked weight runs the same products at 100-205 GFLOP/s, and 11-18% faster than MKL
at multiple choice's ~1,000 rows (``benchmarks/linear_kernels.py``, docs/performance.md).
``torch.compile`` does the same packing (inductor's freezing pass calls these two ops), but compiles,
and again for new shapes; packing here is one reorder per weight at load, no compilation.

The packed copy is extra memory (the linear weights once more); a model whose copy would take more than
a third of the available memory keeps the default kernel. Autograd, other dtypes and devices,
and a weight changed after packing (``_version`` / storage moved) fall back to ``nn.Linear.forward``,
so training on a loaded model is unaffected. The arithmetic differs from MKL's in the last bits (a
different summation order); results record which kernel ran (``LoadedModel.linear_kernel``), and
``EVALKIT_PACKED_LINEAR=0`` keeps the default kernel (to reproduce numbers made before packing).
"""

from __future__ import annotations

import os
import weakref

import torch

KERNEL = "onednn-packed"
DEFAULT_KERNEL = "torch"

# Packed weights live beside the modules, not in them: oneDNN's opaque tensors cannot be deep-copied or
# pickled, and a copied module should simply run the default kernel.
_PACKED: "weakref.WeakKeyDictionary[torch.nn.Module, tuple]" = weakref.WeakKeyDictionary()


def packing_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """An (out, in) fp32 weight in oneDNN's blocked layout. The row-count hint (8) only picks the
    layout's blocking; any number of rows runs on it."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 8)


def packed_product(rows: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(rows, weight, bias)`` for 2-D ``rows`` on a ``pack_weight`` copy of the weight."""
    return torch.ops.mkldnn._linear_pointwise(rows, packed, bias, "none", [], "")


class PackedLinear(torch.nn.Linear):
    """An ``nn.Linear`` whose inference forward uses a oneDNN-packed copy of its weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed, packed_from = _PACKED.get(self, (None, None))
        weight = self.weight
        if (packed is None or x.dtype != torch.float32 or x.device.type != "cpu" or x.numel() == 0
                or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
                or packed_from != (weight.data_ptr(), weight._version)):
            return super().forward(x)
        out = packed_product(x.reshape(-1, x.shape[-1]), packed, self.bias)
        return out.view(*x.shape[:-1], self.out_features)


def _packable(module) -> bool:
    weight = getattr(module, "weight", None)
    return (type(module) in (torch.nn.Linear, PackedLinear) and weight is not None
            and weight.dtype == torch.float32 and weight.device.type == "cpu")


def pack_linear_layers(model, memory_share: float = 1 / 3) -> str:
    """Pack every fp32 CPU ``nn.Linear`` of ``model``; returns the kernel the linears now use."""
    if os.environ.get("EVALKIT_PACKED_LINEAR", "1") == "0":
        return DEFAULT_KERNEL
    if not packing_available():
        return DEFAULT_KERNEL
    layers = [m for m in model.modules() if _packable(m)]
    if not layers:
        return DEFAULT_KERNEL
    import psutil

    needed = sum(m.weight.numel() * m.weight.element_size() for m in layers)
    if needed > memory_share * psutil.virtual_memory().available:
        return DEFAULT_KERNEL
    with torch.no_grad():
        for module in layers:
            weight = module.weight
            _PACKED[module] = (pack_weight(weight), (weight.data_ptr(), weight._version))
            module.__class__ = PackedLinear
    return KERNEL
