"""pytest-benchmark baselines of the embedded SmolLM2-135M-Instruct on fixed workloads (not in the default suite):

    .venv/bin/python -m pytest benchmarks/ --benchmark-only

Timed is seconds for known work (pytest-benchmark compares times); questions/s and tokens/s of the median
round go into ``extra_info``. The nightly job compares with the previous night (docs/nightly.md).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL = "smollm2-135m-instruct"
ROUNDS = 3  # per benchmark; each round is the whole fixed workload


@pytest.fixture(scope="module")
def lm():
    from evalkit.models import load_model

    return load_model(MODEL, device="cpu")


def _rate(benchmark, amount: float) -> float:
    return amount / benchmark.stats.stats.median


def test_bench_mc_scoring_prefix_reuse(benchmark, lm):
    """5-shot CMMLU, the first 6 test questions of 1 subject, batch 8, the subject's prefix computed once."""
    from evalkit.requests import build_requests, choice_targets
    from evalkit.backends.hf.multiple_choice import score_multiple_choice
    from evalkit.tasks import resolve_tasks
    from evalkit.tasks.mc_data import load_split

    spec = resolve_tasks("cmmlu")[0].spec
    requests = []
    for key in list(spec.subjects)[:1]:
        requests += build_requests(spec, "llamafactory", key, load_split(spec, key, spec.eval_split)[:6],
                                   load_split(spec, key, spec.fewshot_split)[:5], lm.tokenizer)
    targets = choice_targets(spec, "llamafactory")
    scores = benchmark.pedantic(score_multiple_choice, args=(lm, requests, targets, 8),
                                kwargs={"progress": False, "reuse_prefix": True}, rounds=ROUNDS, warmup_rounds=1)
    tokens = sum(s.prompt_tokens for s in scores)
    benchmark.extra_info.update(questions=len(scores), prompt_tokens=tokens,
                                questions_per_s=_rate(benchmark, len(scores)), prompt_tokens_per_s=_rate(benchmark, tokens))
    assert len(scores) == 6


def test_bench_generation(benchmark, lm):
    """Greedy continuations of 2 alpaca_zh prompts (chat template), 16 new tokens at most, batch 2."""
    from evalkit.backends.hf.generation import generate, render_prompt, tokenize_prompts
    from evalkit.tasks import resolve_tasks
    from evalkit.tasks.generation_data import load_samples

    spec = resolve_tasks("alpaca_zh")[0].spec
    texts = [render_prompt(lm.tokenizer, s.input, chat=True) for s in load_samples(spec, 2).samples]
    sequences, _ = tokenize_prompts(lm, texts, True, 16, "error", "benchmark")
    outputs, timing = benchmark.pedantic(generate, args=(lm, sequences, 16), kwargs={"batch_size": 2, "progress": False},
                                         rounds=ROUNDS, warmup_rounds=1)
    benchmark.extra_info.update(samples=len(outputs), new_tokens=timing["new_tokens"],
                                tokens_per_s=_rate(benchmark, timing["new_tokens"]))
    assert timing["new_tokens"] > 0


def test_bench_training_step(benchmark, lm):
    """One full-parameter AdamW step (forward, backward, update) on 1 x 128 tokens, on a copy of the weights."""
    import copy

    import torch

    model = copy.deepcopy(lm.model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(0, model.config.vocab_size, (1, 128), generator=generator)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        return float(loss)

    loss = benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=1)
    benchmark.extra_info.update(tokens=batch.numel(), train_tokens_per_s=_rate(benchmark, batch.numel()))
    assert loss == loss  # not NaN


def test_bench_model_load_from_cache(benchmark):
    """Load the embedded model from its dequantised cache (~/.cache/evalkit), as every run does."""
    from evalkit.models import load_model

    loaded = benchmark.pedantic(load_model, args=(MODEL,), kwargs={"device": "cpu"}, rounds=ROUNDS, warmup_rounds=1)
    parameters = sum(p.numel() for p in loaded.model.parameters())
    benchmark.extra_info.update(parameters=parameters, parameters_per_s=_rate(benchmark, parameters))
    assert parameters > 100_000_000
