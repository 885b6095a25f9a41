"""Where a greedy decoding step's time goes on CPU, and how close its weight reads are to the memory.

One step at batch --batch-size after real prompts (alpaca_zh + AdGen, chat template) through the model's
forward with evalkit's in-place KV cache, as ``generate`` runs it; then every linear layer of the model
alone on the same number of rows (they read all the weights once, as a step does), and plain reads of
memory for reference: the same weight tensors summed one by one (the rate at which these tensors, at
their sizes, can be read at all), a sum over one 1 GiB tensor and a matrix-vector product on an
LM-head-sized matrix. From the weights' read rate and the machine's fp32 matmul rate it prints the
roofline of the linears at this batch size: at R rows a weight read from memory is used for 2R FLOPs
per 4 bytes, so no kernel can run them faster than min(read rate, matmul rate / (R / 2)). Each figure
is the median (and range) of --rounds rounds; load averages before and after. Nothing is asserted.

    .venv/bin/python benchmarks/decode_step.py --batch-size 8 --steps 32 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mc_throughput import load, matmul_gflops, seconds_per_call, spread  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=32, help="decoding steps timed per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch

    from evalkit.models import load_model
    from evalkit.backends.hf.generation import left_padded, render_prompt, tokenize_prompts
    from evalkit.backends.hf.kv_cache import CACHE_KWARG, in_place_cache
    from evalkit.tasks import resolve_tasks
    from evalkit.tasks.generation_data import load_samples

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {load()}")
    lm = load_model(args.model, device="cpu", dtype="float32")
    model, rows = lm.model, args.batch_size
    texts = []
    for selection in resolve_tasks("alpaca_zh,adgen"):
        texts += [render_prompt(lm.tokenizer, s.input, chat=True) for s in load_samples(selection.spec, rows).samples]
    sequences, _ = tokenize_prompts(lm, texts[:rows], True, args.steps, "error", "benchmark")
    ids, mask = left_padded(sequences, lm.tokenizer.pad_token_id, "cpu")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    weight_bytes = sum(m.weight.numel() * m.weight.element_size() for m in linears)
    print(f"model {args.model}, linear kernel {lm.linear_kernel}, {torch.get_num_threads()} threads; batch {rows}, "
          f"prompts {min(map(len, sequences))}-{max(map(len, sequences))} tokens; {len(linears)} linear layers, "
          f"{weight_bytes / 1e6:.0f} MB of weights\n")

    @torch.inference_mode()
    def step_ms() -> float:
        cache = in_place_cache(model.config, ids.shape[1] + args.steps + 1)
        out = model(input_ids=ids, attention_mask=mask, logits_to_keep=1, **{CACHE_KWARG: cache})
        token, attention, position = out.logits[:, -1].argmax(-1, keepdim=True), mask, mask.sum(1, keepdim=True) - 1
        started = time.perf_counter()
        for _ in range(args.steps):
            attention, position = torch.cat([attention, attention.new_ones(rows, 1)], 1), position + 1
            out = model(input_ids=token, attention_mask=attention, position_ids=position, logits_to_keep=1,
                        **{CACHE_KWARG: cache})
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        return (time.perf_counter() - started) / args.steps * 1e3

    inputs = {m.in_features: torch.randn(rows, m.in_features) for m in linears}

    @torch.inference_mode()
    def all_linears() -> None:
        for module in linears:
            module(inputs[module.in_features])

    weights = [m.weight for m in linears]

    @torch.inference_mode()
    def sum_weights() -> None:
        for weight in weights:
            weight.sum()

    big = torch.randn(256 * 1024 * 1024)  # 1 GiB
    head = torch.randn(49152, 576)
    vector = torch.randn(576)
    steps, layers, reads, sums, mvs = [], [], [], [], []
    for round_number in range(1, args.rounds + 1):
        before = load()
        steps.append(step_ms())
        layers.append(seconds_per_call(all_linears, 1.0) * 1e3)
        reads.append(weight_bytes / seconds_per_call(sum_weights, 1.0) / 1e9)
        sums.append(big.numel() * 4 / seconds_per_call(lambda: big.sum(), 1.0) / 1e9)
        mvs.append(head.numel() * 4 / seconds_per_call(lambda: torch.mv(head, vector), 1.0) / 1e9)
        print(f"round {round_number}: step {steps[-1]:.1f} ms, linear layers alone {layers[-1]:.1f} ms "
              f"({weight_bytes / layers[-1] / 1e6:.1f} GB/s), weights summed {reads[-1]:.1f} GB/s, sum {sums[-1]:.1f} GB/s, mv {mvs[-1]:.1f} GB/s "
              f"({before} -> {load()})", flush=True)
    rates = [weight_bytes / ms / 1e6 for ms in layers]
    print(f"\ndecoding step at batch {rows}: {spread(steps, 'ms', 'rounds')}")
    print(f"its linear layers alone:   {spread(layers, 'ms', 'rounds')}, "
          f"reading weights at {spread(rates, 'GB/s', 'rounds')}")
    print(f"the same weights summed:   {spread(reads, 'GB/s', 'rounds')}")
    print(f"memory, sum over 1 GiB:    {spread(sums, 'GB/s', 'rounds')}")
    print(f"memory, mv 49152x576:      {spread(mvs, 'GB/s', 'rounds')}")
    matmul = max(matmul_gflops("cpu", torch.float32).values())
    read = statistics.median(reads)
    roofline = min(read, matmul / (rows / 2))  # GB/s of weights: 2 * rows FLOPs per 4 bytes
    linear_ms = statistics.median(layers)
    best_ms = weight_bytes / roofline / 1e6
    print(f"fp32 matmul rate (best of model-like shapes): {matmul:.1f} GFLOP/s; at {rows} rows the linears' roofline is "
          f"{roofline:.1f} GB/s of weights ({'memory' if roofline == read else 'arithmetic'}-bound), "
          f"{best_ms:.1f} ms: the kernel runs at {best_ms / linear_ms:.0%} of it, and a kernel at the roofline "
          f"would make the step {statistics.median(steps) - linear_ms + best_ms:.1f} ms")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {load()}")


if __name__ == "__main__":
    main()
