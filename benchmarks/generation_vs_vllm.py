"""Greedy generation, evalkit's hf backend beside vLLM's CPU engine, at several batch sizes (run in .venv-vllm:
bash benchmarks/setup_vllm.sh). The same alpaca_zh prompts (chat template), fp32, N new tokens; for each batch
size (hf batch size = vLLM max_num_seqs) the two run alternately, ``--rounds`` times, and the table gives the
median new tokens per second (min-max) and how many texts are identical. Engine start-up is not timed.
Prints `uptime` before and after; it asserts nothing about speed.

    VLLM_CPU_KVCACHE_SPACE=2 PYTHONPATH=$PWD .venv-vllm/bin/python benchmarks/generation_vs_vllm.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from vllm_vs_hf import uptime  # also sets vLLM's CPU environment (offline, in-process engine, 2 GB KV cache)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=32, help="alpaca_zh prompts")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", type=int, default=0, help=argparse.SUPPRESS)  # one batch size, in a child process
    return parser.parse_args()


def generate(backend, texts, stop, batch_size: int, max_new_tokens: int) -> tuple[float, list[str]]:
    from evalkit.evaluators.base import RunConfig

    config = RunConfig(batch_size=batch_size, progress=False, use_cache=False)
    started = time.perf_counter()
    generations, _ = backend.generate(texts, chat=True, max_new_tokens=max_new_tokens, stop=stop, config=config,
                                      label="alpaca_zh")
    return sum(g.new_tokens for g in generations) / (time.perf_counter() - started), [g.text for g in generations]


def one_batch_size(args) -> dict:
    """Both backends at ``args.only`` in this process (a vLLM engine per process: a second engine in one process
    finds vLLM's distributed groups torn down by the first one's shutdown)."""
    from evalkit.backends import backend_class
    from evalkit.tasks import resolve_tasks
    from evalkit.tasks.generation_data import load_samples

    spec = resolve_tasks("alpaca_zh")[0].spec
    texts = [spec.instruction + s.input for s in load_samples(spec, args.prompts).samples]
    stop, batch_size = tuple(spec.stop), args.only
    hf = backend_class("hf").load(args.model, backend_class("hf").Options(dtype="float32"))
    vllm = backend_class("vllm").load(args.model, backend_class("vllm").Options(dtype="float32", max_num_seqs=batch_size))
    for backend in (hf, vllm):  # first calls allocate, pick kernels and compile: not timed
        generate(backend, texts[:2], stop, batch_size, 4)
    rates, outputs = {"hf": [], "vllm": []}, {}
    for _ in range(args.rounds):
        for name, backend in (("hf", hf), ("vllm", vllm)):
            rate, outputs[name] = generate(backend, texts, stop, batch_size, args.max_new_tokens)
            rates[name].append(rate)
    return {"batch_size": batch_size, "rates": rates, "prompts": len(texts),
            "same": sum(a == b for a, b in zip(outputs["hf"], outputs["vllm"]))}


def main() -> None:
    import json
    import sys

    args = parse_args()
    if args.only:
        print("RESULT " + json.dumps(one_batch_size(args)), flush=True)
        return
    from evalkit.results import cpu_model

    print("before:", uptime(), flush=True)
    rows = []
    for batch_size in args.batch_sizes.split(","):
        done = subprocess.run([sys.executable, __file__, "--only", batch_size, "--model", args.model, "--prompts",
                               str(args.prompts), "--max-new-tokens", str(args.max_new_tokens), "--rounds", str(args.rounds)],
                              capture_output=True, text=True)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"batch {batch_size} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(line[7:]))
        print(f"batch {batch_size}: {rows[-1]} ({uptime()})", flush=True)
    print("after: ", uptime())
    print(f"\n{cpu_model()}, {os.cpu_count()} cores, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}, "
          f"{args.model} fp32, {rows[0]['prompts']} alpaca_zh prompts x {args.max_new_tokens} new tokens, greedy, "
          f"median of {args.rounds} alternating rounds (min-max)\n")
    print("| batch (hf) / max_num_seqs (vLLM) | evalkit hf tok/s | vLLM CPU tok/s | hf / vLLM | identical texts |")
    print("|---|---|---|---|---|")
    for row in rows:
        rates = row["rates"]
        h, v = (statistics.median(rates[k]) for k in ("hf", "vllm"))
        span = {k: f"{min(rates[k]):.1f}-{max(rates[k]):.1f}" for k in rates}
        print(f"| {row['batch_size']} | {h:.1f} ({span['hf']}) | {v:.1f} ({span['vllm']}) | {h / v:.2f}x | "
              f"{row['same']}/{row['prompts']} |")


if __name__ == "__main__":
    main()
