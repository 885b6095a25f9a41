"""The same questions through three backends: hf in process, `evalkit serve` + --backend openai, and
llama.cpp's OpenAI-compatible server (llama-cpp-python, serving the embedded GGUF file) + --backend openai.

Prints agreement with hf (same predictions, max probability difference, identical generated texts) and
the wall time of each, with the load average before and after. A measurement, not a test.

    python benchmarks/api_backends.py --subjects 10 --per-subject 20 --samples 10 \
        --llamacpp-python .venv-llamacpp/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], url: str, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited; see {log}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(1)
    process.kill()
    raise SystemExit(f"server did not start; see {log}")


def evaluate(out: Path, backend_args: list[str], mc: list[str], gen: list[str]) -> dict[str, float]:
    seconds = {}
    for label, args in (("mc", mc), ("gen", gen)):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "evalkit.cli", "run", *backend_args, *args, "--output-dir", str(out),
                        "--no-store", "--no-progress", "--no-cache"], check=True, stdout=subprocess.DEVNULL)
        seconds[label] = time.perf_counter() - started
    return seconds


def samples(out: Path, task: str) -> list[dict]:
    (path,) = sorted(out.glob(f"*/samples_{task}_*.jsonl"))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--per-subject", type=int, default=20)
    parser.add_argument("--samples", type=int, default=10, help="alpaca_zh samples generated")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--llamacpp-python", default=None, help="python of a virtualenv with llama-cpp-python[server]")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from evalkit.models.embedded import EMBEDDED
    from evalkit.tasks.registry import resolve_tasks

    subjects = list(resolve_tasks("cmmlu")[0].spec.subjects)[: args.subjects]
    mc = ["--tasks", ",".join(f"cmmlu:{s}" for s in subjects), "--num-fewshot", "5", "--limit", str(args.per_subject),
          "--batch-size", "8"]
    gen = ["--tasks", "alpaca_zh", "--limit", str(args.samples), "--max-new-tokens", str(args.max_new_tokens),
           "--batch-size", "1"]
    work = Path(tempfile.mkdtemp(prefix="evalkit-api-bench-"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"load average before: {os.getloadavg()}; OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; work dir {work}")

    runs = {"hf": evaluate(work / "hf", ["--model", MODEL], mc, gen)}
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    server = start([sys.executable, "-m", "evalkit.cli", "serve", "--model", MODEL, "--port", str(port)], url,
                   work / "serve.log")
    try:
        api = ["--backend", "openai", "--base-url", url, "--model", MODEL, "--concurrency", str(args.concurrency)]
        runs["evalkit serve"] = evaluate(work / "evalkit serve", api, mc, gen)
    finally:
        server.terminate()
        server.wait()
    if args.llamacpp_python:
        port = free_port()
        url = f"http://127.0.0.1:{port}/v1"
        gguf = EMBEDDED[MODEL].gguf_path()[0]
        server = start([args.llamacpp_python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2",
                        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "8192", "--logits_all", "true",
                        "--n_threads", os.environ["OMP_NUM_THREADS"]], url, work / "llamacpp.log")
        try:
            api = ["--backend", "openai", "--base-url", url, "--model", "smollm2", "--tokenizer", MODEL,
                   "--concurrency", "1"]
            runs["llama.cpp server (Q4_1)"] = evaluate(work / "llama.cpp server (Q4_1)", api, mc, gen)
        finally:
            server.terminate()
            server.wait()

    hf_mc, hf_gen = samples(work / "hf", "cmmlu"), samples(work / "hf", "alpaca_zh")
    print(f"\n{len(hf_mc)} CMMLU questions (5-shot, {args.subjects} subjects x {args.per_subject}), "
          f"{len(hf_gen)} alpaca_zh samples (greedy, {args.max_new_tokens} new tokens)\n")
    print("| backend | MC same predictions as hf | max abs p diff | MC accuracy | MC wall s | identical texts | generation wall s |")
    print("|---|---|---|---|---|---|---|")
    for name, seconds in runs.items():
        mc_rows, gen_rows = samples(work / name, "cmmlu"), samples(work / name, "alpaca_zh")
        same = sum(a["prediction"] == h["prediction"] for a, h in zip(mc_rows, hf_mc))
        diff = max(abs(a["probabilities"][k] - h["probabilities"][k]) for a, h in zip(mc_rows, hf_mc) for k in "ABCD")
        accuracy = 100 * sum(r["correct"] for r in mc_rows) / len(mc_rows)
        texts = sum(a["prediction"] == h["prediction"] for a, h in zip(gen_rows, hf_gen))
        print(f"| {name} | {same}/{len(hf_mc)} | {diff:.1e} | {accuracy:.1f} | {seconds['mc']:.1f} | "
              f"{texts}/{len(hf_gen)} | {seconds['gen']:.1f} |")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
