"""Greedy outputs of the real SmolLM2-135M-Instruct on real alpaca samples: batch size 4 == batch size 1.

Left padding changes the tensor shapes every matmul sees; the generated token ids must still be the
same, token for token, as when each sample is generated alone.
"""

from __future__ import annotations

import pytest

from evalkit.backends.hf.generation import generate, render_prompt, tokenize_prompts
from evalkit.tasks import resolve_tasks
from evalkit.tasks.generation_data import load_samples


pytestmark = pytest.mark.usefixtures("one_thread")


def real_prompts(lm, per_task: int, max_new: int) -> list[list[int]]:
    texts = []
    for selection in resolve_tasks("alpaca_zh,alpaca_en"):
        texts += [render_prompt(lm.tokenizer, s.input, chat=True) for s in load_samples(selection.spec, per_task).samples]
    sequences, _ = tokenize_prompts(lm, texts, True, max_new, "error", "alpaca")
    return sequences


def check_batch_invariance(lm, per_task: int, max_new: int, sizes=(4,)) -> None:
    sequences = real_prompts(lm, per_task, max_new)
    assert len({len(s) for s in sequences}) > 1  # different prompt lengths: batches are really padded
    single, _ = generate(lm, sequences, max_new, batch_size=1, progress=False)
    assert all(g.tokens for g in single)
    for size in sizes:
        batched, _ = generate(lm, sequences, max_new, batch_size=size, progress=False)
        for i, (a, b) in enumerate(zip(single, batched)):
            assert a.tokens == b.tokens, f"sample {i}: batch {size} differs from batch 1 at token " \
                f"{next(k for k, (x, y) in enumerate(zip(a.tokens + [None], b.tokens + [None])) if x != y)}"
            assert (a.text, a.finish) == (b.text, b.finish)


def test_smollm2_batch_4_equals_batch_1(smollm2):
    check_batch_invariance(smollm2, per_task=2, max_new=10)


@pytest.mark.slow
def test_smollm2_batch_invariance_longer(smollm2):
    check_batch_invariance(smollm2, per_task=8, max_new=48, sizes=(4, 16))
