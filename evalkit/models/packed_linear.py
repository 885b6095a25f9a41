"""fp32 linear layers on CPU on a weight packed once at load: evalkit's panel kernel, else oneDNN.

Why by hand: eager ``F.linear`` on CPU calls MKL's sgemm, which re-packs the weight on every call;
here the weight is packed once, at load, into oneDNN's blocked layout or into the column panels of
evalkit's panel kernel (``panel_kernel.c``, compiled at first use), which also computes every row as
it would alone (one multiply-add chain per output in k order: batch-size invariant by construction).
How fast each kernel is, by row count: ``benchmarks/linear_kernels.py``; measured figures, by host, in
docs/performance.md. ``torch.compile`` does oneDNN's packing too (inductor's freezing pass calls these
ops), but compiles, and again for new shapes; packing here is one reorder per weight at load.

The packed copy is extra memory (the linear weights once more); a model whose copy would take more than
a third of the available memory keeps the default kernel. Autograd, other dtypes and devices,
and a weight changed after packing (``_version`` / storage moved) fall back to ``nn.Linear.forward``,
so training on a loaded model is unaffected. The arithmetic differs from MKL's in the last bits (a
different summation order); results record which kernel ran (``LoadedModel.linear_kernel``).
``EVALKIT_LINEAR_KERNEL`` picks one: ``panels`` (the default where it builds), ``onednn``, or ``torch``
(the default kernel, to reproduce numbers made before packing; ``EVALKIT_PACKED_LINEAR=0`` too).

Neither packed kernel sees an input ``nn.Linear`` would refuse: one whose last dimension is not
``in_features`` (or any non-fp32, non-CPU, non-strided or 0-d one) runs ``nn.Linear.forward``, which
raises its own error; ``panel_kernel.product`` and ``packed_product`` check the rest (2-D fp32 CPU rows,
the packed weight's sizes, a ``(out_features,)`` fp32 CPU bias) before a pointer reaches C or oneDNN.
"""

from __future__ import annotations

import os
import weakref

import torch

from evalkit.models import panel_kernel

PANEL_KERNEL = "evalkit-panels"
ONEDNN_KERNEL = "onednn-packed"
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
    """``F.linear(rows, weight, bias)`` for 2-D fp32 CPU ``rows`` on a ``pack_weight`` copy of the weight.

    Checked first, as ``panel_kernel.product`` does: oneDNN's own checks say only that it "could not
    create a primitive descriptor", and it reads a strided bias as if it were dense (wrong values), so
    the bias is made contiguous. Non-contiguous rows are fine: oneDNN reads their strides.
    """
    if not (rows.is_cpu and rows.dtype is torch.float32 and rows.layout is torch.strided and rows.ndim == 2):
        raise RuntimeError(f"packed_product: expected 2-D torch.float32 CPU rows, got {panel_kernel._describe(rows)}")
    outputs, inputs = packed.shape  # the (out, in) shape of the weight, whatever oneDNN's blocking
    if rows.shape[1] != inputs:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows.shape[0]}x{rows.shape[1]} and "
                           f"{inputs}x{outputs})")
    if bias is not None:
        if not (bias.is_cpu and bias.dtype is torch.float32 and bias.layout is torch.strided
                and bias.shape == (outputs,)):
            raise RuntimeError(f"packed_product: expected a ({outputs},) torch.float32 CPU bias, "
                               f"got {panel_kernel._describe(bias)}")
        bias = bias.contiguous()
    return torch.ops.mkldnn._linear_pointwise(rows, packed, bias, "none", [], "")


def best_kernel() -> str:
    """The kernel ``pack_linear_layers`` uses on this machine (memory permitting)."""
    chosen = os.environ.get("EVALKIT_LINEAR_KERNEL", "panels")
    if os.environ.get("EVALKIT_PACKED_LINEAR", "1") == "0" or chosen == "torch":
        return DEFAULT_KERNEL
    if chosen == "panels" and panel_kernel.available():
        return PANEL_KERNEL
    return ONEDNN_KERNEL if packing_available() else DEFAULT_KERNEL


class PackedLinear(torch.nn.Linear):
    """An ``nn.Linear`` whose inference forward uses a packed copy of its weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed, packed_from, kernel = _PACKED.get(self, (None, None, None))
        weight = self.weight
        # Anything the packed kernels would not compute as nn.Linear does goes to nn.Linear.forward, which
        # computes it or raises its own error (a wrong in_features: "mat1 and mat2 shapes cannot be
        # multiplied"); is_cpu, not device.type: a few attribute reads per call.
        if (packed is None or x.dtype is not torch.float32 or not x.is_cpu or x.layout is not torch.strided
                or x.ndim == 0 or x.numel() == 0 or x.shape[-1] != self.in_features
                or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
                or packed_from != (weight.data_ptr(), weight._version)):
            return super().forward(x)
        rows = x.reshape(-1, x.shape[-1])
        if kernel == PANEL_KERNEL:
            out = panel_kernel.product(rows, packed, self.out_features, self.bias)
        else:
            out = packed_product(rows, packed, self.bias)
        return out.view(*x.shape[:-1], self.out_features)


def _packable(module) -> bool:
    weight = getattr(module, "weight", None)
    return (type(module) in (torch.nn.Linear, PackedLinear) and weight is not None
            and weight.dtype == torch.float32 and weight.device.type == "cpu")


def pack_linear_layers(model, memory_share: float = 1 / 3) -> str:
    """Pack every fp32 CPU ``nn.Linear`` of ``model``; returns the kernel the linears now use."""
    kernel = best_kernel()
    if kernel == DEFAULT_KERNEL:
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
            packed = panel_kernel.pack(weight) if kernel == PANEL_KERNEL else pack_weight(weight)
            _PACKED[module] = (packed, (weight.data_ptr(), weight._version), kernel)
            module.__class__ = PackedLinear
    return kernel
