"""Training cost per fine-tuning method (as in LLaMA-Factory's Table 4): trainable parameters,
peak memory and training tokens/s on one recipe of fixed sequence length.

Every method trains the same model on the same data: stage ``pt`` over the vendored C4 demo text,
cut into blocks of exactly ``--seq-len`` tokens, so every step computes batch x seq-len tokens
whatever the method. Each method runs in its own process (peak memory is per process); tokens/s
is measured over the steps after the first (the first step includes one-off set-up).
Peak memory is the process's peak RSS on CPU (model, optimiser state, activations, Python) and
``torch.cuda.max_memory_allocated`` on CUDA. Prints figures; asserts nothing about speed.

    .venv/bin/python benchmarks/train_methods.py --steps 3 --seq-len 256 --batch-size 2
    .venv/bin/python benchmarks/train_methods.py --methods lora,qlora-4bit,full
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# name shown -> recipe options (the method plus what distinguishes the variant)
METHODS = {
    "full": {"method": "full"},
    "freeze": {"method": "freeze", "freeze_trainable_layers": 2},
    "galore": {"method": "galore", "galore_rank": 16},
    "lora": {"method": "lora"},
    "qlora-4bit": {"method": "qlora", "quantization_bit": 4},
    "qlora-8bit": {"method": "qlora", "quantization_bit": 8},
    "dora": {"method": "dora"},
    "rslora": {"method": "rslora"},
    "loraplus": {"method": "loraplus"},
    "pissa": {"method": "pissa"},
    "lora+neftune": {"method": "lora", "neftune_alpha": 5.0},
    "prefix": {"method": "prefix", "num_virtual_tokens": 16},
    "adapter": {"method": "adapter", "adapter_size": 64},
}


def worker(args) -> None:
    """Train one method in this process and print one RESULT line."""
    import resource

    import torch
    from transformers import TrainerCallback

    from evalkit.train.recipe import recipe_from_dict
    from evalkit.train.runner import train

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.durations, self.peak_rss_mb, self.started = [], None, None

        def on_step_begin(self, *_args, **_kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, *_args, **_kwargs):
            self.durations.append(time.perf_counter() - self.started)

        def on_train_end(self, *_args, **_kwargs):
            self.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="evalkit-bench-train-") as scratch:
        options = {
            "model": args.model, "stage": "pt", "dataset": "tasks/data/sft/c4_demo.jsonl", "cutoff_len": args.seq_len,
            "per_device_train_batch_size": args.batch_size, "max_steps": args.steps, "save_steps": 10**6,
            "logging_steps": 1, "report_to": "none", "lora_rank": args.lora_rank, "lora_target": "all",
            "output_dir": os.path.join(scratch, "out"), **METHODS[args.worker],
        }
        output = train(recipe_from_dict(options, "benchmark"), callbacks=[timer])
        manifest = json.loads((output / "train_manifest.json").read_text(encoding="utf-8"))
    timed = timer.durations[1:] or timer.durations
    seconds_per_step = sum(timed) / len(timed)
    result = {
        "method": args.worker, "trainable": manifest["trainable_parameters"], "total": manifest["total_parameters"],
        "peak_rss_mb": timer.peak_rss_mb, "seconds_per_step": seconds_per_step,
        "tokens_per_s": args.batch_size * args.seq_len / seconds_per_step,
        "first_loss": manifest["loss_curve"][0]["loss"], "last_loss": manifest["loss_curve"][-1]["loss"],
    }
    if torch.cuda.is_available():
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(result), flush=True)


def run_method(name: str, args) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--model", args.model, "--steps",
               str(args.steps), "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size),
               "--lora-rank", str(args.lora_rank)]
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"method": name, "error": tail}
    result = json.loads(lines[-1][len("RESULT "):])
    result["wall_s"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--steps", type=int, default=3, help="training steps per method (the first is not timed)")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per sample (fixed)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for each method's process")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}")

    import torch

    print(f"model {args.model}, stage pt on tasks/data/sft/c4_demo.jsonl, {args.seq_len} tokens x batch "
          f"{args.batch_size} per step, {args.steps} steps (first not timed), LoRA rank {args.lora_rank}")
    from evalkit.results import cpu_model
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU only'}")
    header = f"{'method':<14}{'trainable':>14}{'% of total':>11}{'peak mem MB':>13}{'tokens/s':>10}{'s/step':>9}{'loss first->last':>20}"
    print(header)
    print("-" * len(header))
    results = []
    for name in names:
        result = run_method(name, args)
        results.append(result)
        if "error" in result:
            print(f"{name:<14}  failed: {result['error']}", flush=True)
            continue
        memory = result.get("cuda_peak_mb", result["peak_rss_mb"])
        print(f"{name:<14}{result['trainable']:>14,}{100 * result['trainable'] / result['total']:>10.2f}%"
              f"{memory:>13,.0f}{result['tokens_per_s']:>10.1f}{result['seconds_per_step']:>9.2f}"
              f"{result['first_loss']:>10.3f} -> {result['last_loss']:<7.3f}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"args": vars(args), "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
