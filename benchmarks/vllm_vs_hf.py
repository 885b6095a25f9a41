"""vLLM vs evalkit's hf backend, side by side on the same inputs (run in .venv-vllm: bash benchmarks/setup_vllm.sh).

* Generation: alpaca_zh prompts (chat template), greedy, N new tokens, the same batch size (hf batch size =
  vLLM max_num_seqs): new tokens per second and how many texts are identical.
* Multiple choice: cmmlu questions, k-shot, through vLLM (prefix caching) and through the hf backend's
  prefix-reuse path: questions per second and how many predictions agree, largest probability gap.

Each backend goes through evalkit's own Backend interface (what `evalkit run --backend ...` uses). Engine
start-up (vLLM compiles and warms up on its first load) is reported apart from the timed work. Prints a
Markdown table and `uptime` before and after; it asserts nothing about speed.

    VLLM_CPU_KVCACHE_SPACE=2 OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv-vllm/bin/python benchmarks/vllm_vs_hf.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=32, help="alpaca_zh prompts")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="hf batch size = vLLM max_num_seqs")
    parser.add_argument("--subjects", type=int, default=5, help="cmmlu subjects")
    parser.add_argument("--per-subject", type=int, default=20)
    parser.add_argument("--num-fewshot", type=int, default=5)
    return parser.parse_args()


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def workload(tokenizer, args):
    from evalkit.requests import build_requests, choice_targets
    from evalkit.tasks import resolve_tasks
    from evalkit.tasks.generation_data import load_samples
    from evalkit.tasks.mc_data import load_split

    spec = resolve_tasks("alpaca_zh")[0].spec
    texts = [spec.instruction + s.input for s in load_samples(spec, args.prompts).samples]
    cmmlu = resolve_tasks("cmmlu")[0].spec
    requests = []
    for key in list(cmmlu.subjects)[: args.subjects]:
        questions = load_split(cmmlu, key, cmmlu.eval_split)[: args.per_subject]
        exemplars = load_split(cmmlu, key, cmmlu.fewshot_split)[: args.num_fewshot]
        requests += build_requests(cmmlu, "llamafactory", key, questions, exemplars, tokenizer)
    return texts, tuple(spec.stop), requests, choice_targets(cmmlu, "llamafactory")


def measure(backend, texts, stop, requests, targets, args) -> dict:
    from evalkit.evaluators.base import RunConfig

    config = RunConfig(batch_size=args.batch_size, progress=False, use_cache=False)
    started = time.perf_counter()
    generations, _ = backend.generate(texts, chat=True, max_new_tokens=args.max_new_tokens, stop=stop,
                                      config=config, label="alpaca_zh")
    generate_s = time.perf_counter() - started
    started = time.perf_counter()
    scores = backend.score_choices(requests, targets, config, "cmmlu")
    score_s = time.perf_counter() - started
    new_tokens = sum(g.new_tokens for g in generations)
    return {"texts": [g.text for g in generations], "new_tokens": new_tokens, "tokens_per_s": new_tokens / generate_s,
            "generate_s": generate_s, "scores": scores, "questions_per_s": len(requests) / score_s, "score_s": score_s}


def main() -> None:
    args = parse_args()
    from evalkit.backends import backend_class
    from evalkit.results import cpu_model

    print("before:", uptime())
    runs, loads = {}, {}
    for name, options in (("hf", backend_class("hf").Options(dtype="float32")),
                          ("vllm", backend_class("vllm").Options(dtype="float32", max_num_seqs=args.batch_size))):
        started = time.perf_counter()
        backend = backend_class(name).load(args.model, options)
        loads[name] = time.perf_counter() - started
        texts, stop, requests, targets = workload(backend.tokenizer, args)
        runs[name] = measure(backend, texts, stop, requests, targets, args)
        if name == "vllm":
            version = backend.describe()["vllm"]
        del backend
    print("after: ", uptime())

    hf, vl = runs["hf"], runs["vllm"]
    same_texts = sum(a == b for a, b in zip(hf["texts"], vl["texts"]))
    same_predictions = sum(a.prediction == b.prediction for a, b in zip(hf["scores"], vl["scores"]))
    gap = max(abs(x - y) for a, b in zip(hf["scores"], vl["scores"]) for x, y in zip(a.probabilities, b.probabilities))
    n_gen, n_mc = len(hf["texts"]), len(hf["scores"])
    print(f"\n{cpu_model()}, {os.cpu_count()} cores, vLLM {version}, "
          f"{args.model} fp32, batch size / max_num_seqs {args.batch_size}\n")
    print("| backend | generation tok/s | new tokens | identical texts | MC questions/s | same predictions | model load s |")
    print("|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        print(f"| {name} | {run['tokens_per_s']:.1f} | {run['new_tokens']} | "
              f"{same_texts}/{n_gen} | {run['questions_per_s']:.2f} | {same_predictions}/{n_mc} | {loads[name]:.0f} |")
    print(f"\ngeneration: {n_gen} alpaca_zh prompts x {args.max_new_tokens} new tokens; MC: {n_mc} cmmlu questions, "
          f"{args.num_fewshot}-shot ({args.subjects} subjects x {args.per_subject}); max |dp| {gap:.1e}")


if __name__ == "__main__":
    main()
