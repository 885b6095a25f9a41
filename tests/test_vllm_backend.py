"""--backend vllm against --backend hf on the real SmolLM2-135M-Instruct (fp32, CPU): the same questions give the same
predictions (>= 199/200) and probabilities within 1e-4, greedy alpaca_zh texts are identical, and a LoRA adapter
directory (run by vLLM through LoRARequest, by hf through PEFT) gives the same predictions on both, and
perplexity over sliding windows (prompt_logprobs) equals hf's.

Runs in the vLLM virtualenv only (the default one has no vLLM), by the nightly job:
    bash benchmarks/setup_vllm.sh
    VLLM_CPU_KVCACHE_SPACE=2 OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv-vllm/bin/python -m pytest -m vllm tests/test_vllm_backend.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here; run in .venv-vllm (bash benchmarks/setup_vllm.sh)")

from tests.conftest import REPO, SMOLLM2  # noqa: E402

pytestmark = pytest.mark.vllm

SUBJECTS = ["agronomy", "anatomy", "ancient_chinese", "arts", "astronomy", "business_ethics",
            "chinese_civil_service_exam", "chinese_driving_rule", "chinese_food_culture", "chinese_foreign_policy"]
CMMLU = ",".join(f"cmmlu:{s}" for s in SUBJECTS)
ENV = {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}


def evalkit_run(backend: str, model: str, out: Path, *args: str) -> list[dict]:
    """Samples of one `evalkit run` (a subprocess: each vLLM engine gets a fresh process)."""
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "evalkit.cli", "run", "--backend", backend, "--model", model,
                           "--output-dir", str(out), "--no-store", "--no-progress", "--no-cache", *args],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = out.glob("*/results_*.json")
    assert json.loads(results.read_text(encoding="utf-8"))["backend"]["name"] == backend
    return [json.loads(line) for path in sorted(out.glob("*/samples_*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()]


def compare_choices(vllm_rows: list[dict], hf_rows: list[dict]) -> tuple[int, float]:
    """(same predictions, largest probability difference) over the same questions in the same order."""
    assert [(r["subject"], r["index"]) for r in vllm_rows] == [(r["subject"], r["index"]) for r in hf_rows]
    same = sum(a["prediction"] == b["prediction"] for a, b in zip(vllm_rows, hf_rows))
    gap = max(abs(a["probabilities"][k] - b["probabilities"][k]) for a, b in zip(vllm_rows, hf_rows) for k in "ABCD")
    return same, gap


def test_multiple_choice_matches_hf(tmp_path):
    args = ("--tasks", CMMLU, "--num-fewshot", "5", "--limit", "20", "--dtype", "float32")
    vllm_rows = evalkit_run("vllm", SMOLLM2, tmp_path / "vllm", *args)
    hf_rows = evalkit_run("hf", SMOLLM2, tmp_path / "hf", *args)
    assert len(hf_rows) == 200
    same, gap = compare_choices(vllm_rows, hf_rows)
    print(f"\nvllm vs hf, 200 cmmlu questions 5-shot fp32: {same}/200 same predictions, max |dp| = {gap:.2e}")
    assert same >= 199
    assert gap < 1e-4


def test_greedy_generation_matches_hf(tmp_path):
    args = ("--tasks", "alpaca_zh", "--limit", "10", "--max-new-tokens", "64", "--dtype", "float32")
    vllm_rows = evalkit_run("vllm", SMOLLM2, tmp_path / "vllm", *args)
    hf_rows = evalkit_run("hf", SMOLLM2, tmp_path / "hf", *args)
    assert len(hf_rows) == 10
    same = [a["prediction"] == b["prediction"] for a, b in zip(vllm_rows, hf_rows)]
    print(f"\nvllm vs hf, alpaca_zh greedy 64 tokens: {sum(same)}/10 identical texts")
    assert all(same), [(a["prediction"], b["prediction"]) for a, b, s in zip(vllm_rows, hf_rows, same) if not s]


@pytest.fixture(scope="module")
def lora_adapter(tmp_path_factory) -> Path:
    """A PEFT LoRA adapter on SmolLM2 with random (non-zero) B matrices, so it really changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from evalkit.models.embedded import resolve_embedded

    base, _ = resolve_embedded(SMOLLM2)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    torch.manual_seed(0)
    config = LoraConfig(r=8, lora_alpha=16, init_lora_weights=False, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # a small random update: the answers move, the model still speaks
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.mul_(0.05)
    directory = tmp_path_factory.mktemp("lora")
    peft_model.save_pretrained(str(directory))
    adapter_config = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
    adapter_config["base_model_name_or_path"] = SMOLLM2  # evalkit resolves the alias for both backends
    (directory / "adapter_config.json").write_text(json.dumps(adapter_config), encoding="utf-8")
    return directory


def test_lora_adapter_matches_hf(tmp_path, lora_adapter):
    args = ("--tasks", ",".join(f"cmmlu:{s}" for s in SUBJECTS[:3]), "--num-fewshot", "5", "--limit", "10",
            "--dtype", "float32")
    vllm_rows = evalkit_run("vllm", str(lora_adapter), tmp_path / "vllm", *args)
    hf_rows = evalkit_run("hf", str(lora_adapter), tmp_path / "hf", *args)
    base_rows = evalkit_run("hf", SMOLLM2, tmp_path / "base", *args)
    same, gap = compare_choices(vllm_rows, hf_rows)
    _, moved = compare_choices(hf_rows, base_rows)
    print(f"\nLoRA adapter, vllm (LoRARequest) vs hf (PEFT): {same}/30 same predictions, max |dp| = {gap:.2e}; "
          f"the adapter moves probabilities by up to {moved:.2e} from the base")
    assert moved > 1e-3  # the adapter is applied (else this would compare the base with itself)
    assert same == len(hf_rows)
    assert gap < 1e-4


def test_perplexity_matches_hf():
    """Sliding windows (64 tokens, stride 32: several windows per document) through prompt_logprobs vs hf."""
    from evalkit.backends import backend_class
    from evalkit.evaluators.base import RunConfig
    from evalkit.evaluators.perplexity import perplexity_summary
    from evalkit.tasks.perplexity_spec import load_documents
    from evalkit.tasks import resolve_tasks

    os.environ.update(ENV)
    documents = load_documents(resolve_tasks("perplexity_default")[0].spec)[0][:3]
    config = RunConfig(progress=False, use_cache=False)
    summaries = {}
    for name in ("hf", "vllm"):
        engine = {"enforce_eager": True} if name == "vllm" else {}
        backend = backend_class(name).load(SMOLLM2, backend_class(name).Options(dtype="float32", **engine))
        window, stride = backend.rolling_window(64, 32)
        rows = backend.loglikelihood_rolling(documents, window, stride, config)
        summaries[name] = perplexity_summary(rows, window, stride)
        del backend
    hf, vllm = summaries["hf"], summaries["vllm"]
    assert vllm["predicted_tokens"] == hf["predicted_tokens"] > 3 * 64  # every token predicted once, over many windows
    print(f"\nperplexity vllm {vllm['perplexity']:.6f} vs hf {hf['perplexity']:.6f}")
    assert abs(vllm["perplexity"] / hf["perplexity"] - 1) < 1e-5
    assert abs(vllm["perplexity_llamafactory"] / hf["perplexity_llamafactory"] - 1) < 1e-5


def test_three_and_five_option_specs_match_hf(tmp_path):
    """Issue 26: the allowed tokens follow each question's own labels (2-5 options here) and give hf's answers."""
    from tests.test_n_options import write_task

    specs = [write_task(tmp_path / "three", 3), write_task(tmp_path / "five", 5)]
    args = ("--tasks", ",".join(str(s) for s in specs), "--num-fewshot", "2", "--limit", "30")
    vllm_rows = evalkit_run("vllm", SMOLLM2, tmp_path / "vllm", *args)
    hf_rows = evalkit_run("hf", SMOLLM2, tmp_path / "hf", *args)
    assert len(hf_rows) == 60 and {len(r["probabilities"]) for r in hf_rows} == {2, 3, 4, 5}
    assert [list(r["probabilities"]) for r in vllm_rows] == [list(r["probabilities"]) for r in hf_rows]
    same = sum(a["prediction"] == b["prediction"] for a, b in zip(vllm_rows, hf_rows))
    gap = max(abs(a["probabilities"][k] - b["probabilities"][k]) for a, b in zip(vllm_rows, hf_rows) for k in b["probabilities"])
    print(f"\nvllm vs hf, 3- and 5-option specs (60 questions, 2-shot): {same}/60 same predictions, max |dp| = {gap:.2e}")
    assert same == 60 and gap < 1e-4
