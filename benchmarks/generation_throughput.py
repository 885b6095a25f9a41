"""Generation throughput: new tokens per second at batch size 1 and at larger batches.

Real model (default: the embedded SmolLM2-135M-Instruct), real prompts (the held-out alpaca_en and
alpaca_zh samples, chat template applied), greedy decoding through evalkit's own generation path.
Prints figures; it asserts nothing about speed. It also reports whether every batch size produced
the same tokens as batch size 1.

    .venv/bin/python benchmarks/generation_throughput.py --samples 8 --max-new-tokens 32 --batch-sizes 1,2,4,8
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--samples", type=int, default=8, help="samples per task (alpaca_en and alpaca_zh)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-sizes", default="1,2,4,8")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import torch

    from evalkit.models import load_model
    from evalkit.results import cpu_model
    from evalkit.backends.hf.generation import generate, render_prompt, tokenize_prompts
    from evalkit.tasks import resolve_tasks
    from evalkit.tasks.generation_data import load_samples

    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(args.model, device=args.device)
    texts = []
    for selection in resolve_tasks("alpaca_en,alpaca_zh"):
        texts += [render_prompt(lm.tokenizer, s.input, chat=True) for s in load_samples(selection.spec, args.samples).samples]
    sequences, _ = tokenize_prompts(lm, texts, True, args.max_new_tokens, "error", "benchmark")
    print(f"model {args.model} ({lm.dtype}, {lm.device}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, {cpu_model()}; load average {os.getloadavg()[0]:.1f}")
    print(f"{len(sequences)} prompts ({args.samples} alpaca_en + {args.samples} alpaca_zh), "
          f"{min(map(len, sequences))}-{max(map(len, sequences))} prompt tokens, max_new_tokens {args.max_new_tokens}, greedy\n")

    generate(lm, sequences[:1], 4, progress=False)  # warm-up: first-call allocations, kernel selection
    print(f"{'batch':>5} {'new tokens':>10} {'seconds':>8} {'tokens/s':>9} {'same as batch 1':>16}")
    reference, figures = None, {}
    for size in [int(x) for x in args.batch_sizes.split(",")]:
        started = time.perf_counter()
        outputs, timing = generate(lm, sequences, args.max_new_tokens, batch_size=size, progress=False)
        seconds = time.perf_counter() - started
        tokens = [g.tokens for g in outputs]
        reference = reference or tokens
        figures[size] = timing["new_tokens"] / seconds
        print(f"{size:>5} {timing['new_tokens']:>10} {seconds:>8.1f} {figures[size]:>9.1f} {str(tokens == reference):>16}")
    best = max(figures, key=figures.get)
    base = figures.get(1)
    line = f"\nbest: batch {best}, {figures[best]:.1f} tokens/s"
    if base:
        line += f" ({figures[best] / base:.1f}x batch 1's {base:.1f} tokens/s)"
    print(line)


if __name__ == "__main__":
    main()
