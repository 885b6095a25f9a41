"""Cloze scoring (``scoring: cloze``) on the other backends: --backend openai against a real `evalkit serve`
(echoed prompt log-probabilities, with and without --tokenizer) equal to --backend hf, the server's echo, and
--backend vllm's prompt_logprobs (nightly, ``-m vllm``)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.helpers import run_cli

COMMON = ["--tasks", "mmlu_cloze:anatomy,mmlu_cloze:astronomy", "--limit", "4", "--num-fewshot", "1",
          "--no-progress", "--no-store"]


def samples(out) -> list[dict]:
    (path,) = sorted(out.glob("*/samples_mmlu_cloze_*.jsonl"))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_same_cloze(reference: list[dict], other: list[dict], tolerance: float = 1e-4) -> float:
    assert [r["prompt_sha256"] for r in other] == [r["prompt_sha256"] for r in reference]
    assert [r["prediction"] for r in other] == [r["prediction"] for r in reference]
    assert [r["prediction_norm"] for r in other] == [r["prediction_norm"] for r in reference]
    worst = max(abs(a["loglikelihoods"][k] - b["loglikelihoods"][k]) for a, b in zip(reference, other)
                for k in a["loglikelihoods"])
    assert worst < tolerance, worst
    return worst


def test_openai_cloze_through_evalkit_serve_equals_hf(capsys, monkeypatch, tmp_path, varied_model_dir, one_thread):
    from tests.test_api_backend import KEY, serving

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    code, _, err = run_cli(capsys, "run", "--model", str(varied_model_dir), *COMMON, "--output-dir", str(tmp_path / "hf"))
    assert code == 0, err
    hf = samples(tmp_path / "hf")
    assert len(hf) == 8 and len({r["prediction"] for r in hf}) > 1  # varied answers: the agreement is not vacuous
    log: list[str] = []
    with serving(str(varied_model_dir), "--api-key", KEY, name="tiny", log=log) as url:
        for name, extra in (("ids", ["--tokenizer", str(varied_model_dir)]), ("text", [])):
            code, _, err = run_cli(capsys, "run", "--backend", "openai", "--base-url", url, "--model", "tiny", *extra,
                                   *COMMON, "--output-dir", str(tmp_path / name))
            assert code == 0, err
            assert_same_cloze(hf, samples(tmp_path / name))
    assert sum("POST /v1/completions 200" in line for line in log) >= 16  # one request per question, each run


def test_serve_echo_with_one_new_token_is_one_pass_and_the_same_numbers(varied_model_dir):
    """lm-eval's loglikelihood request (echo, logprobs=1, max_tokens=1) answers as max_tokens=0 does for the
    prompt's tokens; the server computes it in one forward pass."""
    from tests.test_api_backend import serving

    with serving(str(varied_model_dir), name="tiny") as url:
        def ask(max_tokens: int) -> dict:
            body = {"model": "tiny", "prompt": [[12, 345, 678, 90, 1234]], "echo": True, "logprobs": 1,
                    "max_tokens": max_tokens, "temperature": 0}
            answer = httpx.post(f"{url}/completions", json=body, timeout=60)
            assert answer.status_code == 200, answer.text
            return answer.json()["choices"][0]["logprobs"]

        one, zero = ask(1), ask(0)
    assert len(one["token_logprobs"]) == 6 and len(zero["token_logprobs"]) == 5
    assert one["token_logprobs"][:5] == zero["token_logprobs"] and one["token_logprobs"][0] is None
    assert one["top_logprobs"][:5] == zero["top_logprobs"] and one["tokens"][:5] == zero["tokens"]


def test_openai_cloze_refuses_mc_mode_generate(capsys, monkeypatch, tmp_path, varied_model_dir):
    from tests.test_api_backend import serving

    with serving(str(varied_model_dir), name="tiny") as url:
        code, _, err = run_cli(capsys, "run", "--backend", "openai", "--base-url", url, "--model", "tiny",
                               "--mc-mode", "generate", *COMMON, "--output-dir", str(tmp_path))
    assert code == 2 and "drop --mc-mode generate" in err and len(err.strip().splitlines()) == 1


@pytest.mark.vllm
def test_vllm_cloze_equals_hf(capsys, tmp_path):
    """vLLM's prompt_logprobs give the hf backend's log-likelihoods (nightly, in .venv-vllm). SmolLM2, not the
    tiny model: vLLM's CPU attention has no kernel for the tiny model's head_dim of 16."""
    from tests.conftest import SMOLLM2

    for backend in ("hf", "vllm"):
        code, _, err = run_cli(capsys, "run", "--backend", backend, "--model", SMOLLM2, *COMMON,
                               "--output-dir", str(tmp_path / backend))
        assert code == 0, err
    worst = assert_same_cloze(samples(tmp_path / "hf"), samples(tmp_path / "vllm"), tolerance=1e-3)
    print(f"vLLM vs hf cloze: same predictions, max |loglikelihood difference| {worst:.2e}")


def test_vllm_cloze_reads_prompt_logprobs_as_the_hf_engine_scores(monkeypatch, tiny_lm, one_thread):
    """vLLM is not installed here: vllm_cloze.py against a stand-in engine whose prompt_logprobs come from the
    tiny model's own forward pass must give the hf engine's log-likelihoods."""
    import sys
    import types

    import torch

    from evalkit.backends import vllm_cloze
    from evalkit.backends.hf.cloze import score_cloze as hf_cloze
    from evalkit.backends.vllm import VLLMBackend
    from evalkit.evaluators.base import RunConfig
    from tests.test_cloze import cloze_requests

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=lambda **kwargs: kwargs))

    class Engine:
        lm, memo = tiny_lm, staticmethod(lambda kind, payloads: None)
        _chunks = staticmethod(VLLMBackend._chunks)

        @staticmethod
        def _run(prompts, params):
            assert params == {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 1}
            outputs = []
            for ids in prompts:
                with torch.inference_mode():
                    rows = torch.log_softmax(tiny_lm.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
                entries = [None] + [{ids[j]: types.SimpleNamespace(logprob=float(rows[j - 1, ids[j]]),
                                                                   rank=1 + int((rows[j - 1] > rows[j - 1, ids[j]]).sum()))}
                                    for j in range(1, len(ids))]
                outputs.append(types.SimpleNamespace(prompt_logprobs=entries))
            return outputs

    requests = cloze_requests(per_subject=2, shots=1)
    scores = vllm_cloze.score_cloze(Engine, requests, RunConfig(progress=False), "mmlu_cloze")
    reference = hf_cloze(tiny_lm, requests, 8, progress=False)
    for a, b in zip(scores, reference):
        assert a.loglikelihoods == pytest.approx(b.loglikelihoods, abs=1e-4) and a.greedy == b.greedy
