"""fp32 linear layers on CPU: eager ``F.linear`` (MKL) against oneDNN on a packed weight (what
evalkit's loaded models use, evalkit/models/packed_linear.py), at SmolLM2-135M's shapes and the row
counts of decoding (1-32) and of multiple choice (64-2,048). Prints GFLOP/s per kernel, the
speed-up, and whether a row's result is the same whether it is computed alone or with the others.
Nothing is asserted.

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

from evalkit.models.packed_linear import pack_weight, packed_product  # noqa: E402

SHAPES = {"q/o 576x576": (576, 576), "gate/up 1536x576": (1536, 576), "down 576x1536": (576, 1536),
          "LM head 49152x576": (49152, 576)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1,8,16,32,256,1024")
    parser.add_argument("--seconds", type=float, default=0.5, help="timing budget per kernel and shape")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    print(f"{'weight':>20} {'rows':>5} {'F.linear GFLOP/s':>17} {'oneDNN packed':>14} {'speed-up':>9} "
          f"{'row alone == in batch (F.linear, oneDNN)':>42}")
    for name, (outputs, inputs) in SHAPES.items():
        weight = torch.randn(outputs, inputs)
        packed = pack_weight(weight)
        for rows in (int(r) for r in args.rows.split(",")):
            x = torch.randn(rows, inputs)

            def plain(x=x):
                return torch.nn.functional.linear(x, weight)

            def onednn(x=x):
                return packed_product(x, packed)

            flops = 2 * rows * inputs * outputs
            a, b = seconds_per_call(plain, args.seconds), seconds_per_call(onednn, args.seconds)
            alone = (torch.equal(plain(x[:1]), plain()[:1]), torch.equal(onednn(x[:1]), onednn()[:1]))
            print(f"{name:>20} {rows:>5} {flops / a / 1e9:>17.1f} {flops / b / 1e9:>14.1f} {a / b:>8.2f}x "
                  f"{str(alone):>42}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
