"""Profiler figures and perplexity, checked against direct computations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from evalkit.evaluate import run_evaluation
from evalkit.evaluators.base import RunConfig
from evalkit.profile import Profiler, format_profile
from evalkit.backends.hf.perplexity import perplexity
from evalkit.evaluators.perplexity import window_ranges
from evalkit.tasks.perplexity_spec import Document, load_documents
from evalkit.tasks.registry import resolve_tasks
from tests.helpers import run_cli


def test_profiler_measures_phases_memory_and_tokens():
    with Profiler() as prof:
        with prof.phase("allocate"):
            block = np.ones(300 * 2**20 // 8)  # 300 MB, touched so it is resident
        prof.add_tokens("prefill", 1000, 2.0)
        prof.add_tokens("prefill", 500, 1.0)
    result = prof.result()
    del block
    assert result["memory"]["peak_rss_mb"] >= 300
    assert result["phases"]["allocate"] > 0 and result["wall_s"] >= result["phases"]["allocate"]
    assert result["throughput"]["prefill"] == {"tokens": 1500, "seconds": 3.0, "tokens_per_s": 500.0}
    assert result["hardware"]["cpu_logical_cores"] >= 1 and "cpu" in result["hardware"]
    assert "peak RSS" in format_profile(result) and "prefill 500 tok/s" in format_profile(result)


@pytest.mark.parametrize("length,window,stride", [(1, 4, 2), (10, 4, 2), (10, 4, 4), (9, 4, 3), (3, 8, 4), (100, 16, 5)])
def test_sliding_windows_predict_every_token_once(length, window, stride):
    predicted = []
    for begin, end, first in window_ranges(length, window, stride):
        assert end - begin <= window and begin < first <= end
        predicted += range(first, end)
    if stride < window:
        assert predicted == list(range(1, length))
    else:  # non-overlapping windows (HF's recipe too): a window's first token has no context to be predicted from
        assert predicted == [t for t in range(1, length) if t % window]


def test_evaluation_profile_counts_prompt_tokens_and_is_printed(tiny_model_dir, tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", "--model", str(tiny_model_dir), "--tasks", "cmmlu:agronomy", "--limit", "3",
                             "--no-progress", "--output-dir", str(tmp_path), "--store", str(tmp_path / "s.sqlite"))
    assert code == 0, err
    line = next(l for l in out.splitlines() if l.startswith("profile:"))
    assert "peak RSS" in line and "prefill" in line and "tok/s" in line and "model load" in line
    results_file = next(tmp_path.rglob("results_*.json"))
    results = json.loads(results_file.read_text())
    rows = [json.loads(l) for l in (results_file.parent / results["tasks"]["cmmlu"]["samples_file"]).open()]
    prefill = results["profile"]["throughput"]["prefill"]
    assert prefill["tokens"] == sum(r["prompt_tokens"] for r in rows) > 0
    assert prefill["tokens_per_s"] == pytest.approx(prefill["tokens"] / prefill["seconds"], rel=0.01)
    assert results["profile"]["model_load_s"] > 0 and results["profile"]["hardware"]["cpu"]
    assert "store: run" in out


def _direct_perplexity(lm, documents: list[Document], window: int, stride: int) -> float:
    """Hugging Face's strided-perplexity recipe (labels masked with -100, loss from the model), with the
    token count made exact: the model shifts labels left by one, so a window predicts the unmasked labels
    from its second position on (the recipe's ``trg_len - 1`` is off by one after the first window)."""
    import torch

    nll_sum, n_tokens = 0.0, 0
    for doc in documents:
        input_ids = torch.tensor([lm.tokenizer(doc.text)["input_ids"]])
        seq_len = input_ids.size(1)
        prev_end_loc = 0
        for begin_loc in range(0, seq_len, stride):
            end_loc = min(begin_loc + window, seq_len)
            trg_len = end_loc - prev_end_loc
            ids = input_ids[:, begin_loc:end_loc]
            target_ids = ids.clone()
            target_ids[:, :-trg_len] = -100
            with torch.no_grad():
                loss = lm.model(ids, labels=target_ids).loss
            num_valid = (target_ids[:, 1:] != -100).sum().item()
            nll_sum += loss.double().item() * num_valid
            n_tokens += num_valid
            prev_end_loc = end_loc
            if end_loc == seq_len:
                break
    return math.exp(nll_sum / n_tokens)


def test_smollm2_perplexity_matches_direct_computation(smollm2):
    spec = resolve_tasks("perplexity_default")[0].spec
    documents = load_documents(spec)[0][:2]  # two short C4 records; a small window makes them slide
    summary, rows = perplexity(smollm2, documents, window=64, stride=32)
    assert summary["perplexity"] == pytest.approx(_direct_perplexity(smollm2, documents, 64, 32), abs=1e-4)
    assert summary["predicted_tokens"] == sum(r["document_tokens"] - 1 for r in rows)
    # LLaMA-Factory's figure: mean over documents of exp(mean NLL) within the first window
    first = [_direct_perplexity(smollm2, [Document(d.source, d.index, smollm2.tokenizer.decode(
        smollm2.tokenizer(d.text)["input_ids"][:64]))], 64, 64) for d in documents]
    assert summary["perplexity_llamafactory"] == pytest.approx(sum(first) / len(first), rel=1e-3)


@pytest.mark.slow
def test_smollm2_perplexity_on_the_whole_default_set(smollm2, tmp_path, capsys):
    code, out, err = run_cli(capsys, "profile", "--model", "smollm2-135m-instruct", "--no-progress", "--decode-tokens", "8",
                             "--output-dir", str(tmp_path), "--store", str(tmp_path / "s.sqlite"))
    assert code == 0, err
    results = json.loads(next(tmp_path.rglob("profile_*.json")).read_text())
    block = results["tasks"]["perplexity_default"]
    spec = resolve_tasks("perplexity_default")[0].spec
    direct = _direct_perplexity(smollm2, load_documents(spec)[0], spec.window, spec.stride)
    assert block["perplexity"] == pytest.approx(direct, abs=1e-4)
    assert f"{block['perplexity']:.4f}" in out and results["profile"]["throughput"]["decode"]["tokens"] == 7


def test_perplexity_task_runs_through_evalkit_run(tiny_lm, tmp_path):
    results = run_evaluation("tiny", "perplexity_default", RunConfig(limit=2, progress=False), str(tmp_path),
                             lm=tiny_lm, record=False)
    block = results["tasks"]["perplexity_default"]
    assert block["type"] == "perplexity" and block["documents"] == 2
    # a random model over a ~49k vocabulary is close to uniform: perplexity near the vocabulary size
    assert 0.5 * len(tiny_lm.tokenizer) < block["perplexity"] < 2 * len(tiny_lm.tokenizer)
    assert results["profile"]["throughput"]["prefill"]["tokens"] > 0
