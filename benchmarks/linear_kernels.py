"""fp32 linear layers on CPU: eager ``F.linear`` (MKL), oneDNN on a packed weight and evalkit's panel
kernel (evalkit/models/panel_kernel.c, what loaded models use where it builds), at SmolLM2-135M's shapes
and the row counts of decoding (1-32) and of multiple choice (64-2,048). Prints GFLOP/s per kernel, the
panel kernel's speed-up over oneDNN, and whether a row's result is the same whether it is computed
alone or with the others. The weights stay in cache between calls here; inside a model they come
from memory (benchmarks/decode_step.py times that). Nothing is asserted.

    .venv/bin/python benchmarks/linear_kernels.py
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mc_throughput import seconds_per_call  # noqa: E402

from evalkit.models import panel_kernel  # noqa: E402
from evalkit.models.packed_linear import pack_weight, packed_product  # noqa: E402

SHAPES = {"q/o 576x576": (576, 576), "k/v 192x576": (192, 576), "gate/up 1536x576": (1536, 576),
          "down 576x1536": (576, 1536), "LM head 49152x576": (49152, 576)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1,8,16,32,256,1024")
    parser.add_argument("--seconds", type=float, default=0.5, help="timing budget per kernel and shape")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    if not panel_kernel.available():
        sys.exit("the panel kernel does not build here (no C compiler, or torch without OpenMP)")
    print(f"{'weight':>20} {'rows':>5} {'F.linear':>9} {'oneDNN':>7} {'panels':>7} {'panels/oneDNN':>14} "
          f"{'row alone == in batch (F.linear, oneDNN, panels)':>50}   (GFLOP/s)")
    for name, (outputs, inputs) in SHAPES.items():
        weight = torch.randn(outputs, inputs)
        packed, panels = pack_weight(weight), panel_kernel.pack(weight)
        for rows in (int(r) for r in args.rows.split(",")):
            x = torch.randn(rows, inputs)
            kernels = [lambda x=x: torch.nn.functional.linear(x, weight), lambda x=x: packed_product(x, packed),
                       lambda x=x: panel_kernel.product(x, panels, outputs)]
            flops = 2 * rows * inputs * outputs
            seconds = [seconds_per_call(kernel, args.seconds) for kernel in kernels]
            alone = tuple(torch.equal(kernel(x[:1].clone()), kernel()[:1]) for kernel in kernels)
            rates = [flops / s / 1e9 for s in seconds]
            print(f"{name:>20} {rows:>5} {rates[0]:>9.1f} {rates[1]:>7.1f} {rates[2]:>7.1f} "
                  f"{seconds[1] / seconds[2]:>13.2f}x {str(alone):>50}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
