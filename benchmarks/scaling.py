"""How evalkit's cost grows: multiple-choice time and peak memory as few-shot k, questions per subject and batch
size grow, and generation time as max new tokens and batch size grow. Each point is one `evalkit run` process
(request cache off, store off); its evaluation wall time and peak RSS are read from the results file. Prints a
Markdown table and `uptime` before and after; it asserts nothing.

    .venv/bin/python benchmarks/scaling.py                      # the default grid
    .venv/bin/python benchmarks/scaling.py --fewshot 0,5 --per-subject 10 --batch 8 --new-tokens 32 --gen-batch 8
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SUBJECTS = "cmmlu:agronomy,cmmlu:anatomy,cmmlu:ancient_chinese,cmmlu:arts,cmmlu:astronomy"


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def one_run(*argv: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run([sys.executable, "-m", "evalkit", "run", *argv, "--output-dir", out, "--no-store",
                               "--no-cache", "--no-progress"], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"evalkit run {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
        (path,) = Path(out).glob("*/results_*.json")
        data = json.loads(path.read_text(encoding="utf-8"))
    task = next(iter(data["tasks"].values()))
    n = task["micro"]["n"] if "micro" in task else task.get("n")  # multiple choice: the micro average's n
    return {"wall_s": data["profile"]["wall_s"] - data["timing"]["model_load_s"], "n": n,
            "peak_rss_mb": data["profile"]["memory"]["peak_rss_mb"], "threads": data["config"]["threads"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--fewshot", type=ints, default=[0, 1, 5])
    parser.add_argument("--per-subject", type=ints, default=[10, 50, 200])
    parser.add_argument("--batch", type=ints, default=[1, 8, 32])
    parser.add_argument("--new-tokens", type=ints, default=[32, 128, 512])
    parser.add_argument("--gen-batch", type=ints, default=[1, 8])
    parser.add_argument("--prompts", type=int, default=8, help="alpaca_zh prompts per generation point")
    args = parser.parse_args()
    from evalkit.results import cpu_model

    print("before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    print(f"\n{cpu_model()}, {args.model} fp32, threads auto, 5 CMMLU subjects; wall = evaluation without model load\n")
    print("| task | k-shot | questions (per subject) | batch | max new tokens | n | wall s | peak RSS MB | threads |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k, per, batch in itertools.product(args.fewshot, args.per_subject, args.batch):
        row = one_run("--model", args.model, "--tasks", SUBJECTS, "--num-fewshot", str(k), "--limit", str(per),
                      "--batch-size", str(batch))
        print(f"| cmmlu (5 subjects) | {k} | {per} | {batch} | - | {row['n']} | {row['wall_s']:.1f} | "
              f"{row['peak_rss_mb']:.0f} | {row['threads']} |", flush=True)
    for tokens, batch in itertools.product(args.new_tokens, args.gen_batch):
        row = one_run("--model", args.model, "--tasks", "alpaca_zh", "--limit", str(args.prompts),
                      "--max-new-tokens", str(tokens), "--batch-size", str(batch))
        print(f"| alpaca_zh | - | {args.prompts} prompts | {batch} | {tokens} | {row['n']} | {row['wall_s']:.1f} | "
              f"{row['peak_rss_mb']:.0f} | {row['threads']} |", flush=True)
    print("\nafter:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
