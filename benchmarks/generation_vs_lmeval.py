"""Generation: evalkit's ``hf`` path against lm-evaluation-harness's ``generate_until``, same prompts.

The first --samples prompts of each --tasks task (default alpaca_zh and adgen), the model's chat
template around each (evalkit's render_prompt; lm-eval gets the rendered text, as its
--apply_chat_template would produce), greedy, fp32, the same --max-new-tokens, stop at EOS only,
the same batch size. lm-eval 0.4.13 runs in its own venv (benchmarks/setup_lmeval.sh) through
benchmarks/lmeval_task/timed_generate_until.py. The tools alternate for --rounds rounds; printed
are each run's seconds and new tokens/s with the load average before and after, the median and
range, and how many texts are identical between the tools (greedy fp32 should give the same
text; a difference is shown with the first differing position). Nothing is asserted.

    .venv/bin/python benchmarks/generation_vs_lmeval.py --samples 16 --max-new-tokens 128 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from mc_throughput import LMEVAL_PYTHON, load, plain_model_dir, spread  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tasks", default="alpaca_zh,adgen")
    parser.add_argument("--samples", type=int, default=16, help="the first N samples of each task")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8, help="both tools' batch size")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lmeval-python", default=str(LMEVAL_PYTHON))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import torch

    from evalkit.backends.outputs import clean_generation
    from evalkit.models import load_model
    from evalkit.results import cpu_model
    from evalkit.backends.hf.generation import generate, render_prompt, tokenize_prompts
    from evalkit.tasks import resolve_tasks
    from evalkit.tasks.generation_data import load_samples

    lm = load_model(args.model, device="cpu", dtype="float32")
    contexts = []
    for selection in resolve_tasks(args.tasks):
        contexts += [render_prompt(lm.tokenizer, s.input, chat=True)
                     for s in load_samples(selection.spec, args.samples).samples]
    print(f"model {args.model} (float32, cpu), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, {cpu_model()}")
    print(f"{len(contexts)} prompts ({args.samples} of each of {args.tasks}), chat template, greedy, "
          f"max_new_tokens {args.max_new_tokens}, stop at EOS, batch size {args.batch_size} for both\n")

    def run_evalkit():
        started = time.perf_counter()
        sequences, _ = tokenize_prompts(lm, contexts, True, args.max_new_tokens, "error", "benchmark")
        outputs, _ = generate(lm, sequences, args.max_new_tokens, batch_size=args.batch_size, progress=False)
        return time.perf_counter() - started, outputs

    with tempfile.TemporaryDirectory(prefix="generation_vs_lmeval_") as tmp:
        work = Path(tmp)
        request, answer = work / "request.json", work / "answer.json"
        request.write_text(json.dumps({"contexts": contexts, "max_gen_toks": args.max_new_tokens,
                                       "batch_size": args.batch_size,
                                       "pretrained": str(plain_model_dir(args.model, work))}), encoding="utf-8")

        def run_lmeval():
            env = {**os.environ, "HF_DATASETS_OFFLINE": "1"}
            done = subprocess.run([args.lmeval_python, str(ROOT / "benchmarks/lmeval_task/timed_generate_until.py"),
                                   str(request), str(answer)], env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"lm-eval failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
            return json.loads(answer.read_text(encoding="utf-8"))

        generate(lm, tokenize_prompts(lm, contexts[:1], True, 4, "error", "warm-up")[0], 4, progress=False)
        ours, theirs, outputs, lmeval = [], [], None, None
        for round_number in range(1, args.rounds + 1):
            before = load()
            seconds, outputs = run_evalkit()
            tokens = sum(g.new_tokens for g in outputs)
            ours.append((seconds, tokens))
            print(f"round {round_number}: evalkit {seconds:.1f} s, {tokens} new tokens, {tokens / seconds:.1f} tokens/s "
                  f"({before} -> {load()})", flush=True)
            before = load()
            lmeval = run_lmeval()
            theirs.append((lmeval["seconds"], lmeval["new_tokens"]))
            print(f"round {round_number}: lm-eval generate_until {lmeval['seconds']:.1f} s, {lmeval['new_tokens']} new "
                  f"tokens, {lmeval['new_tokens'] / lmeval['seconds']:.1f} tokens/s ({before} -> {load()})", flush=True)

    ours_rate = [t / s for s, t in ours]
    theirs_rate = [t / s for s, t in theirs]
    print(f"\nevalkit:  {spread([s for s, _ in ours])}; tokens/s median {statistics.median(ours_rate):.1f} "
          f"(range {min(ours_rate):.1f}-{max(ours_rate):.1f})")
    print(f"lm-eval:  {spread([s for s, _ in theirs])}; tokens/s median {statistics.median(theirs_rate):.1f} "
          f"(range {min(theirs_rate):.1f}-{max(theirs_rate):.1f})")
    print(f"evalkit vs lm-eval tokens/s: {statistics.median(ours_rate) / statistics.median(theirs_rate):.2f}x "
          f"(ratio of medians); per round {', '.join(f'{a / b:.2f}x' for a, b in zip(ours_rate, theirs_rate))}")

    # evalkit scores a text stripped, without the U+FFFD of a character cut at max_new_tokens
    # (backends/outputs.clean_generation); lm-eval returns it raw. Compared both ways.
    raw = sum(g.text == t for g, t in zip(outputs, lmeval["texts"]))
    cleaned = [clean_generation(t, (), "length")[0] for t in lmeval["texts"]]
    same = [g.text == t for g, t in zip(outputs, cleaned)]
    print(f"identical texts: {sum(same)}/{len(same)} (after evalkit's clean-up of lm-eval's text; {raw} as returned)")
    for i, (g, t) in enumerate(zip(outputs, cleaned)):
        if g.text != t:
            where = next((j for j, (a, b) in enumerate(zip(g.text, t)) if a != b), min(len(g.text), len(t)))
            print(f"  prompt {i}: first difference at character {where}: evalkit {g.text[where:where + 30]!r} "
                  f"lm-eval {t[where:where + 30]!r}")


if __name__ == "__main__":
    main()
