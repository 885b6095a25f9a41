"""Shared fixtures: a tiny randomly initialised model (fast tests) and the real embedded model."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Runs recorded by tests go to a throwaway results store, never the user's own.
# Tests that compare runs must compute both; the request-cache tests name their own file.
os.environ.setdefault("EVALKIT_REQUEST_CACHE", "off")
os.environ.setdefault("EVALKIT_STORE", os.path.join(tempfile.mkdtemp(prefix="evalkit-test-store-"), "store.sqlite"))

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = "smollm2-135m-instruct"


def build_tiny_model(directory: Path, *, seed: int = 0, context: int = 512, **config_overrides) -> Path:
    """A 2-layer Llama with SmolLM2's real tokenizer (and chat template), random weights."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from evalkit.models.embedded import resolve_embedded

    source, _ = resolve_embedded(SMOLLM2)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        **{"tie_word_embeddings": True, **config_overrides},
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Path of a tiny random Llama checkpoint (safetensors + tokenizer); do not modify it."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def varied_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama with an untied, wide-initialised LM head, so greedy outputs vary with the prompt.

    (The shared tiny model ties its head to the embeddings and just repeats the prompt's last token.)
    """
    return build_tiny_model(tmp_path_factory.mktemp("varied-llama"), tie_word_embeddings=False, initializer_range=0.2)


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    from evalkit.models import load_model

    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="session")
def smollm2():
    """The real embedded SmolLM2-135M-Instruct (fp32, CPU), loaded once per test session."""
    from evalkit.models import load_model

    return load_model(SMOLLM2)


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny models on a shared, oversubscribed CPU run several times
    faster without OpenMP barriers; results hold at any thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright, as the page tests open reports and leaderboards."""
    from scripts.screenshot_pages import BROWSER_ARGS, CHROMIUM

    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.is_file():
        pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        yield chromium
        chromium.close()
