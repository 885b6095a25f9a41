"""Multiple-choice throughput: evalkit (full prompt, prefix reuse) against lm-evaluation-harness.

The same 5-shot CMMLU questions (the first --per-subject test questions of the first --subjects
subjects, exemplars the first five dev rows, LLaMA-Factory's prompt text) go through

  (a) evalkit's full-prompt path      (``evalkit run --full-prompt``),
  (b) evalkit's prefix-reuse path     (``evalkit run``, the default),
  (c) lm-evaluation-harness's ``hf`` model, run as ``lm_eval`` in its own venv
      (benchmarks/setup_lmeval.sh) with the custom task files in benchmarks/lmeval_task/.

Timed is the scoring phase of each (tokenisation + forward passes; model loading and imports are
not), lm-eval's through a stopwatch around ``HFLM.loglikelihood`` (benchmarks/lmeval_task/
timed_lm_eval.py). On a shared CPU one run of each is not a figure: the tools alternate for
--rounds rounds (evalkit, lm-eval, evalkit, lm-eval, ...) and the median and range of each are
printed, with the load average before and after every run. Printed too: whether the prompts are
the same text and the predictions the same question by question, and the compute floor: the FLOPs
of the tokens that must be computed divided by the fp32 matmul rate measured in the same run
(before and after the rounds, with torch.matmul, oneDNN on a packed weight and evalkit's panel
kernel, the ways evalkit's linears can run; the highest, so the floor is the lowest). Nothing is asserted.

    .venv/bin/python benchmarks/mc_throughput.py --subjects 10 --per-subject 50 --batch-size 8 --lmeval-batch-size 8
    .venv/bin/python benchmarks/mc_throughput.py --subjects 2 --per-subject 3 --rounds 1  # quick check
"""

from __future__ import annotations

import argparse
import glob
import json
import math
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
LMEVAL_PYTHON = ROOT / "benchmarks" / ".venv-lmeval" / "bin" / "python"
LMEVAL_TASKS = ROOT / "benchmarks" / "lmeval_task"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="embedded alias or local model dir")
    parser.add_argument("--subjects", type=int, default=10, help="the first N CMMLU subjects (spec order)")
    parser.add_argument("--per-subject", type=int, default=20, help="the first N test questions of each")
    parser.add_argument("--num-fewshot", type=int, default=5)
    parser.add_argument("--batch-size", default="8", help="evalkit's batch size (N or auto)")
    parser.add_argument("--lmeval-batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for all three (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each tool (median and range)")
    parser.add_argument("--skip-full", action="store_true", help="skip evalkit's full-prompt path (run once)")
    parser.add_argument("--skip-lmeval", action="store_true")
    parser.add_argument("--lmeval-python", default=str(LMEVAL_PYTHON))
    parser.add_argument("--work-dir", default=None, help="where lm-eval writes (default: a temporary dir)")
    return parser.parse_args()


def build_requests(lm, subjects: int, per_subject: int, shots: int):
    from evalkit.requests import build_requests as build, choice_targets
    from evalkit.tasks import resolve_tasks
    from evalkit.tasks.mc_data import load_split

    spec = resolve_tasks("cmmlu")[0].spec
    keys = list(spec.subjects)[:subjects]
    requests = []
    for key in keys:
        questions = load_split(spec, key, spec.eval_split)[:per_subject]
        exemplars = load_split(spec, key, spec.fewshot_split)[:shots]
        requests += build(spec, "llamafactory", key, questions, exemplars, lm.tokenizer)
    return keys, requests, choice_targets(spec, "llamafactory")


def seconds_per_call(product, budget: float = 1.0, device: str = "cpu") -> float:
    """Mean seconds of ``product()`` over ``budget`` seconds, after one warm-up call."""
    import torch

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    product()
    sync()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < budget:
        product()
        calls += 1
    sync()
    return (time.perf_counter() - started) / calls


def matmul_gflops(device: str, dtype) -> dict[str, float]:
    """Best fp32 GEMM rate over shapes like the model's (tokens x hidden x intermediate) and a square one,
    for torch.matmul and, on CPU, for oneDNN on a packed weight and evalkit's panel kernel (the floor takes the
    fastest)."""
    import torch

    from evalkit.models import panel_kernel
    from evalkit.models.packed_linear import pack_weight, packed_product, packing_available

    best: dict[str, float] = {}
    for m, k, n in ((1024, 576, 1536), (1024, 1536, 576), (2048, 2048, 2048)):
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        products = {"torch.matmul": lambda: torch.matmul(a, b)}
        if device == "cpu" and packing_available():
            packed = pack_weight(b.t().contiguous())
            products["oneDNN packed"] = lambda: packed_product(a, packed)
        if device == "cpu" and dtype == torch.float32 and panel_kernel.available():
            panels = panel_kernel.pack(b.t().contiguous())
            products["evalkit panels"] = lambda: panel_kernel.product(a, panels, n)
        for name, product in products.items():
            best[name] = max(best.get(name, 0.0), 2 * m * k * n / seconds_per_call(product, 1.0, device) / 1e9)
    return best


def forward_flops(model, tokens: list[tuple[int, int]], head_positions: int) -> float:
    """FLOPs to compute tokens at positions [start, end) of sequences, plus ``head_positions`` LM-head rows.

    2 x (weights of the decoder's matrices) per token, plus attention: a token at position p
    multiplies its query with p + 1 keys and the weights with p + 1 values (4 x heads x head_dim
    x (p + 1) per layer). Norms, activations and rotary embeddings are left out (a few %).
    """
    config = model.config
    head = model.get_output_embeddings().weight
    embed = model.get_input_embeddings().weight
    matrices = sum(p.numel() for p in model.parameters() if p.dim() == 2 and p is not head and p is not embed)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    attention_width = 4 * config.num_hidden_layers * heads * head_dim
    total = 0.0
    for start, end in tokens:
        keys = (end * (end + 1) - start * (start + 1)) / 2  # sum of (p + 1) for p in [start, end)
        total += 2 * matrices * (end - start) + attention_width * keys
    return total + head_positions * 2 * head.numel()


def timed_scoring(lm, requests, targets, batch_size, reuse_prefix: bool):
    from evalkit.backends.hf.multiple_choice import score_multiple_choice

    started = time.perf_counter()
    scores = score_multiple_choice(lm, requests, targets, batch_size, progress=False, reuse_prefix=reuse_prefix)
    return scores, time.perf_counter() - started


def plain_model_dir(spec: str, work: Path) -> Path:
    """The model directory for lm-eval: the same weight files, without the dequantised-GGUF marker.

    evalkit's embedded models are cached as fp32 safetensors whose config.json still names the
    GGUF they came from; transformers then asks lm-eval for a gguf_file. A directory of links to
    the same files with that key removed loads the identical weights.
    """
    from evalkit.models.embedded import EMBEDDED, resolve_embedded

    source = resolve_embedded(spec)[0] if spec in EMBEDDED else Path(spec)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    if "quantization_config" not in config:
        return source
    target = work / "model"
    target.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.name != "config.json" and not (target / file.name).exists():
            (target / file.name).symlink_to(file)
    config.pop("quantization_config")
    (target / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return target


def run_lmeval(args, keys: list[str], work: Path) -> dict:
    """lm_eval as a subprocess; returns timings, contexts and letter log-likelihoods per (subject, doc)."""
    model_dir = plain_model_dir(args.model, work)
    sys.path.insert(0, str(LMEVAL_TASKS))
    import make_tasks  # the per-subject task files, generated from evalkit's spec (not committed)

    make_tasks.main()
    timing_file, output = work / "lmeval_timing.jsonl", work / "lmeval_output"
    timing_file.unlink(missing_ok=True)
    dtype = "float32" if args.device == "cpu" else "bfloat16"
    command = [args.lmeval_python, str(LMEVAL_TASKS / "timed_lm_eval.py"), "--model", "hf",
               "--model_args", f"pretrained={model_dir},dtype={dtype}",
               "--tasks", ",".join(f"cmmlu_evalkit_{k}" for k in keys), "--include_path", str(LMEVAL_TASKS),
               "--num_fewshot", str(args.num_fewshot), "--limit", str(args.per_subject),
               "--batch_size", str(args.lmeval_batch_size), "--device", args.device,
               "--log_samples", "--output_path", str(output)]
    env = {**os.environ, "LMEVAL_TIMING_FILE": str(timing_file), "HF_DATASETS_OFFLINE": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    print("lm-eval:", " ".join(command[1:]), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"lm_eval failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    timings = [json.loads(line) for line in timing_file.read_text(encoding="utf-8").splitlines()]
    samples = {}
    for key in keys:
        files = glob.glob(str(output / "**" / f"samples_cmmlu_evalkit_{key}_*.jsonl"), recursive=True)
        if len(files) != 1:
            sys.exit(f"expected one lm-eval samples file for {key} under {output}, found {len(files)}")
        for line in Path(files[0]).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            arguments = [row["arguments"][f"gen_args_{i}"] for i in range(4)]
            samples[(key, row["doc_id"])] = {
                "context": arguments[0]["arg_0"], "letters": [a["arg_1"] for a in arguments],
                "loglikelihoods": [float(r[0]) for r in row["filtered_resps"]],
            }
    return {"seconds": sum(t["seconds"] for t in timings), "wall": wall, "samples": samples}


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def spread(values: list[float], unit: str = "s", runs: str = "runs") -> str:
    ordered = sorted(values)
    return (f"median {statistics.median(ordered):.1f} {unit} (range {ordered[0]:.1f}-{ordered[-1]:.1f}, "
            f"{len(ordered)} {runs})")


def softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def compare(reference, scores) -> tuple[int, float]:
    """Questions with the same prediction, and the largest probability difference."""
    same = sum(r.prediction == s.prediction for r, s in zip(reference, scores))
    worst = max(abs(a - b) for r, s in zip(reference, scores) for a, b in zip(r.probabilities, s.probabilities))
    return same, worst


def main() -> None:
    args = parse_args()
    import torch

    from evalkit.models import load_model
    from evalkit.results import cpu_model
    from evalkit.backends.hf.multiple_choice import prefix_groups, tokenize_prompts
    from evalkit.tasks.mc_data import LETTERS

    if args.threads:
        torch.set_num_threads(args.threads)
    batch_size = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    lm = load_model(args.model, device=args.device, dtype="float32" if args.device == "cpu" else "auto")
    keys, requests, targets = build_requests(lm, args.subjects, args.per_subject, args.num_fewshot)
    sequences, truncated = tokenize_prompts(lm, requests, "error", "cmmlu")
    groups = prefix_groups(requests, sequences, truncated)
    n = len(requests)
    print(f"model {args.model} ({lm.dtype}, {lm.device}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, {cpu_model()}; load average {os.getloadavg()[0]:.1f}")
    print(f"CMMLU {args.num_fewshot}-shot, {len(keys)} subjects x {args.per_subject} = {n} questions, "
          f"{sum(map(len, sequences))} prompt tokens ({min(map(len, sequences))}-{max(map(len, sequences))} per prompt); "
          f"evalkit batch {batch_size}, lm-eval batch {args.lmeval_batch_size}\n")

    rates = [matmul_gflops(lm.device, lm.model.dtype)]
    timed_scoring(lm, requests[:2], targets, 2, reuse_prefix=True)  # warm-up: first-call allocations
    reused_runs, lmeval_runs, lmeval = [], [], None
    for round_number in range(1, args.rounds + 1):
        before = load()
        reused, reused_s = timed_scoring(lm, requests, targets, batch_size, reuse_prefix=True)
        reused_runs.append(reused_s)
        print(f"round {round_number}: evalkit prefix reuse {reused_s:.1f} s ({before} -> {load()})", flush=True)
        if not args.skip_lmeval:
            before = load()
            with tempfile.TemporaryDirectory(prefix="mc_throughput_") as tmp:
                work = Path(args.work_dir) if args.work_dir else Path(tmp)
                lmeval = run_lmeval(args, keys, work)
            lmeval_runs.append(lmeval["seconds"])
            print(f"round {round_number}: lm-evaluation-harness {lmeval['seconds']:.1f} s, "
                  f"wall {lmeval['wall']:.1f} s ({before} -> {load()})", flush=True)
    full, full_s = (None, None)
    if not args.skip_full:
        before = load()
        full, full_s = timed_scoring(lm, requests, targets, batch_size, reuse_prefix=False)
        print(f"evalkit full prompt (once): {full_s:.1f} s ({before} -> {load()})", flush=True)
    rates.append(matmul_gflops(lm.device, lm.model.dtype))
    rate = max(max(r.values()) for r in rates)

    reused_s = statistics.median(reused_runs)
    print(f"\nevalkit prefix reuse:   {spread(reused_runs)}, {n / reused_s:.2f} questions/s")
    if lmeval_runs:
        lmeval_s = statistics.median(lmeval_runs)
        ratios = [l / e for e, l in zip(reused_runs, lmeval_runs)]  # in round order
        print(f"lm-evaluation-harness:  {spread(lmeval_runs)}, {n / lmeval_s:.2f} questions/s")
        print(f"evalkit vs lm-eval: {lmeval_s / reused_s:.2f}x (ratio of medians); per round "
              f"{', '.join(f'{r:.2f}x' for r in ratios)}")
    if full is not None:
        print(f"evalkit full prompt:    {full_s:.1f} s (one run), {n / full_s:.2f} questions/s")

    print()
    if full is not None:
        same, worst = compare(full, reused)
        print(f"prefix reuse vs full prompt: same prediction {same}/{n}, max |probability difference| {worst:.2e}")
    if lmeval:
        samples = lmeval["samples"]
        ours = {(r.request.subject, r.request.index): r for r in reused}
        missing = [k for k in ours if k not in samples]
        if missing:
            sys.exit(f"lm-eval has no sample for {len(missing)} questions (first: {missing[0]})")
        same_prompt = sum(samples[k].get("context") == ours[k].request.prompt for k in ours)
        same_letters = all(samples[k]["letters"] == list(targets) for k in ours)
        same_pred = sum(LETTERS[max(range(4), key=samples[k]["loglikelihoods"].__getitem__)] == ours[k].prediction
                        for k in ours)
        worst = max(abs(a - b) for k in ours for a, b in zip(softmax(samples[k]["loglikelihoods"]), ours[k].probabilities))
        print(f"lm-eval vs evalkit prefix reuse: same prompt text {same_prompt}/{n}, continuations {''.join(targets)!r} "
              f"{'same' if same_letters else 'DIFFERENT'}, same prediction {same_pred}/{n}, "
              f"max |softmax(letter log-likelihoods) - evalkit probability| {worst:.2e}")

    # Compute floor: each subject's shared prefix once, every question's suffix, and at each question's
    # last token the logits of the four letters (all the softmax over the letters needs).
    grouped = {i for _, members in groups for i in members}
    spans = [(0, p) for p, _ in groups] + [(p, len(sequences[i])) for p, members in groups for i in members]
    spans += [(0, len(sequences[i])) for i in range(n) if i not in grouped]
    needed = sum(end - start for start, end in spans)
    hidden = lm.model.get_output_embeddings().weight.shape[1]
    floor_flops = forward_flops(lm.model, spans, 0) + n * 2 * hidden * len(targets)
    floor_s = floor_flops / (rate * 1e9)
    whole = forward_flops(lm.model, [(0, len(s)) for s in sequences], 0) + sum(map(len, sequences)) * 2 * lm.model.get_output_embeddings().weight.numel()
    def rates_text(r: dict) -> str:
        return ", ".join(f"{name} {value:.1f}" for name, value in r.items())

    print(f"\nmatmul rate (fp32, best of model-like shapes and kernels): {rate:.1f} GFLOP/s "
          f"(before the rounds {rates_text(rates[0])}; after {rates_text(rates[1])})")
    print(f"evalkit's linear layers: {lm.linear_kernel}")
    print(f"tokens that must be computed: {needed} ({len(groups)} shared prefixes once + {n} suffixes) "
          f"of {sum(map(len, sequences))} prompt tokens")
    print(f"compute floor: {floor_flops / 1e12:.2f} TFLOP / {rate:.1f} GFLOP/s = {floor_s:.2f} s "
          f"({n / floor_s:.2f} questions/s); evalkit prefix reuse takes {reused_s / floor_s:.2f}x the floor (median; "
          f"{min(reused_runs) / floor_s:.2f}x-{max(reused_runs) / floor_s:.2f}x)")
    print(f"(full prompts with the LM head at every position, as lm-eval computes them: {whole / 1e12:.2f} TFLOP, "
          f"{whole / (rate * 1e9):.2f} s at that rate)")


if __name__ == "__main__":
    main()
