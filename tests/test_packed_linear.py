"""Linear layers on packed weights (evalkit/models/packed_linear.py; the panel kernel where it builds, else
oneDNN): same products as nn.Linear to fp32 rounding, every row computed as it would be alone (panels),
the default kernel wherever packing would be wrong (autograd, a changed weight), and the same greedy
tokens as the default kernel on the real SmolLM2 and real prompts."""

from __future__ import annotations

import pytest
import torch

from evalkit.models import load_model
from evalkit.models import panel_kernel
from evalkit.models.packed_linear import (ONEDNN_KERNEL, PANEL_KERNEL, PackedLinear, best_kernel,
                                          pack_linear_layers)
from evalkit.scoring.generation import generate, render_prompt, tokenize_prompts
from evalkit.tasks import resolve_tasks
from evalkit.tasks.generation_data import load_samples

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
KERNEL = best_kernel()
needs_panels = pytest.mark.skipif(KERNEL != PANEL_KERNEL, reason="the panel kernel does not build here")


def packed_pair(inputs: int, outputs: int, bias: bool):
    torch.manual_seed(0)
    plain = torch.nn.Linear(inputs, outputs, bias=bias)
    packed = torch.nn.Sequential(torch.nn.Linear(inputs, outputs, bias=bias))
    packed[0].load_state_dict(plain.state_dict())
    assert pack_linear_layers(packed) == KERNEL
    assert type(packed[0]) is PackedLinear
    return plain, packed[0]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 64), (8, 64), (3, 37, 64), (2, 1, 64)])
def test_packed_products_equal_nn_linear(shape, bias):
    plain, packed = packed_pair(64, 96, bias)
    x = torch.randn(*shape)
    with torch.inference_mode():
        expected, got = plain(x), packed(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@needs_panels
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("rows", [1, 5, 8, 9, 17, 300])
@pytest.mark.parametrize("outputs, inputs", [(37, 70), (64, 64), (200, 129)])
def test_panel_products_equal_f_linear_and_do_not_depend_on_the_batch(rows, outputs, inputs, bias):
    generator = torch.Generator().manual_seed(rows * outputs + inputs)
    weight = torch.randn(outputs, inputs, generator=generator)
    b = torch.randn(outputs, generator=generator) if bias else None
    x = torch.randn(rows, inputs, generator=generator)
    panels = panel_kernel.pack(weight)
    got = panel_kernel.product(x, panels, outputs, b)
    torch.testing.assert_close(got, torch.nn.functional.linear(x, weight, b), rtol=1e-5, atol=1e-5)
    for row in {0, rows // 2, rows - 1}:  # bit for bit the same as the row alone
        assert torch.equal(panel_kernel.product(x[row:row + 1].clone(), panels, outputs, b), got[row:row + 1])


def test_the_kernel_can_be_chosen_and_a_broken_compiler_means_onednn(monkeypatch):
    monkeypatch.setenv("EVALKIT_LINEAR_KERNEL", "onednn")
    layer = torch.nn.Sequential(torch.nn.Linear(16, 8))
    assert pack_linear_layers(layer) == ONEDNN_KERNEL
    monkeypatch.setenv("EVALKIT_LINEAR_KERNEL", "torch")
    assert pack_linear_layers(torch.nn.Sequential(torch.nn.Linear(16, 8))) == "torch"
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert panel_kernel._build_and_check() is None


def test_autograd_and_changed_weights_use_the_default_kernel():
    plain, packed = packed_pair(32, 16, True)
    x = torch.randn(4, 32)
    loss = packed(x).square().sum()  # grad mode, weight requires grad: nn.Linear.forward, so it trains
    loss.backward()
    assert packed.weight.grad is not None and packed.weight.grad.abs().sum() > 0
    with torch.no_grad():
        packed.weight.mul_(2.0)  # in place: the packed copy is stale now
        assert torch.equal(packed(x), torch.nn.functional.linear(x, packed.weight, packed.bias))
        assert not torch.allclose(packed(x), plain(x))


def test_no_packing_when_memory_is_short(tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    assert lm.linear_kernel == KERNEL
    fresh = torch.nn.Sequential(torch.nn.Linear(8, 8))
    assert pack_linear_layers(fresh, memory_share=0.0) == "torch"
    assert type(fresh[0]) is torch.nn.Linear


def test_packed_smollm2_generates_the_default_kernels_tokens(smollm2, monkeypatch):
    monkeypatch.setenv("EVALKIT_PACKED_LINEAR", "0")
    default = load_model("smollm2-135m-instruct", device="cpu", dtype="float32")
    assert default.linear_kernel == "torch" and smollm2.linear_kernel == KERNEL
    texts = [render_prompt(smollm2.tokenizer, s.input, chat=True)
             for s in load_samples(resolve_tasks("alpaca_en")[0].spec, 4).samples]
    sequences, _ = tokenize_prompts(smollm2, texts, True, 24, "error", "alpaca_en")
    packed_out, _ = generate(smollm2, sequences, 24, batch_size=4, progress=False)
    default_out, _ = generate(default, sequences, 24, batch_size=4, progress=False)
    assert [g.tokens for g in packed_out] == [g.tokens for g in default_out]


def test_a_copied_model_runs_the_default_kernel(tiny_model_dir):
    import copy

    lm = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    twin = copy.deepcopy(lm.model)
    ids = torch.tensor([[5, 17, 300, 42, 9]])
    with torch.inference_mode():
        torch.testing.assert_close(twin(input_ids=ids).logits, lm.model(input_ids=ids).logits, rtol=1e-5, atol=1e-5)
