"""MMLU scored as cloze: evalkit (``mmlu_cloze``) against lm-evaluation-harness 0.4.13 (its own
``mmlu_continuation`` task files, with evalkit's vendored data: benchmarks/lmeval_task/mmlu_cloze_tasks.py).

The same questions (the first --per-subject test questions of --subjects, 0-shot by default) go through

  (a) evalkit's hf cloze engine, in process (``score_cloze``: subject prefix once, each question's
      context once, its options packed), the path ``evalkit run --tasks mmlu_cloze`` takes;
  (b) lm-eval's ``hf`` model, as ``lm_eval`` in its own venv (benchmarks/setup_lmeval.sh).

Timed is the scoring phase of each (tokenisation + forward passes; imports and model loading are not),
lm-eval's through the stopwatch around ``HFLM.loglikelihood`` (benchmarks/lmeval_task/timed_lm_eval.py).
The tools alternate for --rounds rounds; medians and ranges are printed with ``uptime``'s load before and
after and the CPU. Printed too: the prompts and continuations compared byte for byte, and acc, acc_norm
and the log-likelihoods compared question by question. Nothing is asserted (tests/test_cloze_vs_lmeval.py
asserts the agreement).

    .venv/bin/python benchmarks/cloze_vs_lmeval.py                       # 5 subjects x 20, 3 rounds
    .venv/bin/python benchmarks/cloze_vs_lmeval.py --per-subject 3 --rounds 1   # quick check
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
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
SUBJECTS = ("abstract_algebra", "anatomy", "high_school_geography", "marketing", "moral_disputes")


def run_lmeval(lmeval_python: str, model_dir: Path, subjects, limit: int, work: Path, num_fewshot: int = 0,
               batch_size: int = 8, threads: int | None = None) -> dict:
    """lm_eval as a subprocess: its loglikelihood seconds, wall seconds, and per (subject, doc_id) the context,
    continuations, log-likelihoods, acc and acc_norm of its samples file."""
    sys.path.insert(0, str(LMEVAL_TASKS))
    import mmlu_cloze_tasks

    names = mmlu_cloze_tasks.write(lmeval_python, list(subjects))
    timing_file, output = work / "lmeval_timing.jsonl", work / "lmeval_output"
    timing_file.unlink(missing_ok=True)
    shutil.rmtree(output, ignore_errors=True)  # one samples file per task: the previous round's goes
    command = [lmeval_python, str(LMEVAL_TASKS / "timed_lm_eval.py"), "--model", "hf",
               "--model_args", f"pretrained={model_dir},dtype=float32", "--tasks", ",".join(names),
               "--include_path", str(LMEVAL_TASKS), "--num_fewshot", str(num_fewshot), "--limit", str(limit),
               "--batch_size", str(batch_size), "--device", "cpu", "--log_samples", "--output_path", str(output)]
    env = {**os.environ, "LMEVAL_TIMING_FILE": str(timing_file), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"lm_eval failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    samples = {}
    for subject, name in zip(subjects, names):
        files = glob.glob(str(output / "**" / f"samples_{name}_*.jsonl"), recursive=True)
        if len(files) != 1:
            raise RuntimeError(f"expected one lm-eval samples file for {name} under {output}, found {len(files)}")
        for line in Path(files[0]).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            arguments = [row["arguments"][f"gen_args_{i}"] for i in range(len(row["arguments"]))]
            samples[(subject, row["doc_id"])] = {
                "context": arguments[0]["arg_0"], "continuations": [a["arg_1"] for a in arguments],
                "loglikelihoods": [float(r[0]) for r in row["filtered_resps"]],
                "acc": row["acc"], "acc_norm": row["acc_norm"]}
    timings = [json.loads(line) for line in timing_file.read_text(encoding="utf-8").splitlines()]
    return {"seconds": sum(t["seconds"] for t in timings), "wall": wall, "samples": samples}


def cloze_requests(subjects, limit: int, num_fewshot: int = 0):
    from evalkit.requests import build_cloze_requests
    from evalkit.tasks.mc_data import load_split
    from evalkit.tasks.registry import resolve_tasks

    spec = resolve_tasks("mmlu_cloze")[0].spec
    requests = []
    for subject in subjects:
        exemplars = load_split(spec, subject, spec.fewshot_split)[:num_fewshot]
        requests += build_cloze_requests(spec, "lm_eval", subject, load_split(spec, subject, "test")[:limit], exemplars)
    return requests


def agreement(scores, samples: dict) -> dict:
    """Question-by-question comparison of evalkit's ClozeScores with lm-eval's samples."""
    same_text = same_acc = same_norm = 0
    worst = 0.0
    for score in scores:
        request = score.request
        theirs = samples[(request.subject, request.index)]
        same_text += theirs["context"] == request.prompt and theirs["continuations"] == list(request.continuations)
        gold = request.gold
        same_acc += float(score.prediction == gold) == theirs["acc"]
        same_norm += float(score.prediction_norm == gold) == theirs["acc_norm"]
        worst = max(worst, *(abs(a - b) for a, b in zip(score.loglikelihoods, theirs["loglikelihoods"])))
    return {"n": len(scores), "same_text": same_text, "same_acc": same_acc, "same_acc_norm": same_norm,
            "max_loglikelihood_difference": worst}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    return f"median {statistics.median(ordered):.2f} s (range {ordered[0]:.2f}-{ordered[-1]:.2f}, {len(ordered)} runs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="embedded alias or local model dir")
    parser.add_argument("--subjects", default=",".join(SUBJECTS), help="comma-separated MMLU subjects")
    parser.add_argument("--per-subject", type=int, default=20)
    parser.add_argument("--num-fewshot", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8, help="both tools' batch size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both (1: on a shared CPU two "
                        "OpenMP threads each wait on the other processes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lmeval-python", default=str(LMEVAL_PYTHON))
    args = parser.parse_args()

    import torch

    from benchmarks.mc_throughput import plain_model_dir
    from evalkit.backends.hf.cloze import score_cloze
    from evalkit.models import load_model
    from evalkit.results import cpu_model

    torch.set_num_threads(args.threads)
    subjects = args.subjects.split(",")
    lm = load_model(args.model, device="cpu", dtype="float32")
    requests = cloze_requests(subjects, args.per_subject, args.num_fewshot)
    n = len(requests)
    print(f"model {args.model} (float32, cpu), torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, "
          f"{cpu_model()}\nMMLU cloze {args.num_fewshot}-shot, {len(subjects)} subjects x {args.per_subject} = {n} "
          f"questions, {sum(len(r.choices) for r in requests)} continuations; batch size {args.batch_size}")
    print(f"before: {uptime()}", flush=True)
    score_cloze(lm, requests[:2], args.batch_size, progress=False)  # warm-up: first-call allocations
    ours, theirs, lmeval = [], [], None
    with tempfile.TemporaryDirectory(prefix="cloze_vs_lmeval_") as tmp:
        model_dir = plain_model_dir(args.model, Path(tmp))
        for number in range(1, args.rounds + 1):
            started = time.perf_counter()
            scores = score_cloze(lm, requests, args.batch_size, progress=False)
            ours.append(time.perf_counter() - started)
            print(f"round {number}: evalkit {ours[-1]:.2f} s ({uptime()})", flush=True)
            lmeval = run_lmeval(args.lmeval_python, model_dir, subjects, args.per_subject, Path(tmp),
                                args.num_fewshot, args.batch_size, args.threads)
            theirs.append(lmeval["seconds"])
            print(f"round {number}: lm-eval {lmeval['seconds']:.2f} s, wall {lmeval['wall']:.1f} s ({uptime()})",
                  flush=True)
    print(f"\nevalkit: {spread(ours)}, {n / statistics.median(ours):.2f} questions/s")
    print(f"lm-eval: {spread(theirs)}, {n / statistics.median(theirs):.2f} questions/s")
    print(f"evalkit vs lm-eval: {statistics.median(theirs) / statistics.median(ours):.2f}x (ratio of medians); per round "
          f"{', '.join(f'{t / o:.2f}x' for o, t in zip(ours, theirs))}")
    found = agreement(scores, lmeval["samples"])
    print(f"same prompt and continuations {found['same_text']}/{n}, same acc {found['same_acc']}/{n}, same acc_norm "
          f"{found['same_acc_norm']}/{n}, max |loglikelihood difference| {found['max_loglikelihood_difference']:.2e}")
    print(f"after: {uptime()}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
