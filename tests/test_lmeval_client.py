"""lm-evaluation-harness 0.4.13 as a client of `evalkit serve`, with its defaults (issue 25 point 14).

`local-completions` with default model_args sends token-id prompts (a list of id lists, echo, logprobs=1);
it must score CMMLU 5-shot questions through the server and agree with evalkit's in-process hf
probabilities within 1e-4 on every question. Uses benchmarks/setup_lmeval.sh's venv (lm_eval[api]).
"""

from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SMOLLM2
from tests.helpers import run_cli

LMEVAL_PYTHON = REPO / "benchmarks" / ".venv-lmeval" / "bin" / "python"
LMEVAL_TASKS = REPO / "benchmarks" / "lmeval_task"
QUESTIONS = 8

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not LMEVAL_PYTHON.exists(), reason="needs bash benchmarks/setup_lmeval.sh")]


def softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    return [e / sum(exps) for e in exps]


def lmeval_through_server(base_url: str, tokenizer_dir: Path, output: Path) -> list[dict]:
    sys.path.insert(0, str(LMEVAL_TASKS))
    import make_tasks  # lm-eval task files for evalkit's CMMLU prompt (generated, not committed)

    make_tasks.main()
    # model_args as lm-eval's docs give them for a local server; tokenized_requests is left at its default (True).
    model_args = f"model={SMOLLM2},base_url={base_url}/completions,num_concurrent=1,tokenizer={tokenizer_dir}"
    command = [str(LMEVAL_PYTHON), "-m", "lm_eval", "--model", "local-completions", "--model_args", model_args,
               "--tasks", "cmmlu_evalkit_agronomy", "--include_path", str(LMEVAL_TASKS), "--num_fewshot", "5",
               "--limit", str(QUESTIONS), "--log_samples", "--output_path", str(output)]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    files = glob.glob(str(output / "**" / "samples_cmmlu_evalkit_agronomy_*.jsonl"), recursive=True)
    assert len(files) == 1, files
    return sorted((json.loads(line) for line in Path(files[0]).read_text(encoding="utf-8").splitlines()),
                  key=lambda row: row["doc_id"])


def test_lmeval_local_completions_defaults_agree_with_hf(tmp_path, capsys):
    from benchmarks.mc_throughput import plain_model_dir
    from tests.test_api_backend import serving

    code, _, err = run_cli(capsys, "run", "--model", SMOLLM2, "--tasks", "cmmlu:agronomy", "--num-fewshot", "5",
                           "--limit", str(QUESTIONS), "--output-dir", str(tmp_path / "hf"), "--no-store", "--no-progress")
    assert code == 0, err
    results = json.loads(next((tmp_path / "hf").rglob("results_*.json")).read_text(encoding="utf-8"))
    samples_file = next((tmp_path / "hf").rglob(results["tasks"]["cmmlu"]["samples_file"]))
    evalkit_rows = [json.loads(line) for line in samples_file.read_text(encoding="utf-8").splitlines()]

    log: list[str] = []
    with serving(SMOLLM2, log=log) as base_url:
        rows = lmeval_through_server(base_url, plain_model_dir(SMOLLM2, tmp_path), tmp_path / "lmeval")
    assert any("POST /v1/completions 200" in line for line in log), log[-5:]
    assert len(rows) == len(evalkit_rows) == QUESTIONS
    worst, same = 0.0, 0
    for row, ours in zip(rows, evalkit_rows):
        request = row["arguments"]["gen_args_0"]
        assert request["arg_1"] == "A" and request["arg_0"].endswith("答案：")
        theirs = softmax([float(r[0]) for r in row["filtered_resps"]])
        worst = max(worst, *(abs(a - ours["probabilities"][letter]) for a, letter in zip(theirs, "ABCD")))
        same += "ABCD"[theirs.index(max(theirs))] == ours["prediction"]
    print(f"lm-eval local-completions (token-id prompts) vs evalkit hf: {same}/{QUESTIONS} same, max |dp| {worst:.2e}")
    assert same == QUESTIONS and worst < 1e-4
