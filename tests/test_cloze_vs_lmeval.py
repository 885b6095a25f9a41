"""MMLU as cloze, evalkit (``evalkit run --tasks mmlu_cloze``) against lm-evaluation-harness 0.4.13 (its own
``mmlu_continuation`` task files, the data replaced by evalkit's vendored CSVs), the same SmolLM2-135M weights:
the same prompts and continuations byte for byte, acc and acc_norm equal per question, every option's
log-likelihood within 1e-4. 5 subjects x 20 questions 0-shot (lm-eval's default for the task), and 3 x 5 5-shot
for the exemplars' layout; lm-eval runs in its own venv (benchmarks/setup_lmeval.sh).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import REPO, SMOLLM2
from tests.helpers import run_cli

LMEVAL_PYTHON = REPO / "benchmarks" / ".venv-lmeval" / "bin" / "python"
QUESTIONS = 20

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not LMEVAL_PYTHON.exists(), reason="needs bash benchmarks/setup_lmeval.sh")]


FIVE_SHOT = ("anatomy", "marketing", "abstract_algebra")


@pytest.mark.parametrize("subjects, questions, shots", [(None, QUESTIONS, 0), (FIVE_SHOT, 5, 5)],
                         ids=["0-shot 5x20", "5-shot 3x5"])
def test_mmlu_cloze_agrees_with_lmeval_question_by_question(tmp_path, capsys, monkeypatch, subjects, questions, shots):
    from benchmarks.cloze_vs_lmeval import SUBJECTS, cloze_requests, run_lmeval
    from benchmarks.mc_throughput import plain_model_dir

    subjects = subjects or SUBJECTS
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    tasks = ",".join(f"mmlu_cloze:{s}" for s in subjects)
    code, _, err = run_cli(capsys, "run", "--model", SMOLLM2, "--tasks", tasks, "--limit", str(questions),
                           "--num-fewshot", str(shots), "--batch-size", "8", "--output-dir", str(tmp_path / "evalkit"),
                           "--no-store", "--no-progress")
    assert code == 0, err
    results = json.loads(next((tmp_path / "evalkit").rglob("results_*.json")).read_text(encoding="utf-8"))
    task = results["tasks"]["mmlu_cloze"]
    rows = {(r["subject"], r["index"]): r for r in map(json.loads, next(
        (tmp_path / "evalkit").rglob(task["samples_file"])).read_text(encoding="utf-8").splitlines())}
    prompts = {(r.subject, r.index): r for r in cloze_requests(subjects, questions, shots)}

    lmeval = run_lmeval(str(LMEVAL_PYTHON), plain_model_dir(SMOLLM2, tmp_path), subjects, questions, tmp_path,
                        num_fewshot=shots, threads=int(os.environ.get("OMP_NUM_THREADS", "1")))["samples"]
    assert set(lmeval) == set(rows) and len(rows) == len(subjects) * questions
    worst, acc, acc_norm = 0.0, 0, 0
    for key, theirs in lmeval.items():
        ours, request = rows[key], prompts[key]
        assert theirs["context"] == request.prompt, key  # byte for byte
        assert theirs["continuations"] == list(request.continuations), key
        lls = [ours["loglikelihoods"][label] for label in request.labels]
        worst = max(worst, *(abs(a - b) for a, b in zip(lls, theirs["loglikelihoods"])))
        assert float(ours["correct"]) == theirs["acc"], key
        assert float(ours["correct_norm"]) == theirs["acc_norm"], key
        acc += ours["correct"]
        acc_norm += ours["correct_norm"]
    print(f"{len(rows)} questions: acc {acc}, acc_norm {acc_norm} in both; max |loglikelihood difference| {worst:.2e}")
    assert worst < 1e-4
    assert task["micro"]["correct"] == acc and task["micro"]["correct_norm"] == acc_norm
