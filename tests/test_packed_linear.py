"""Linear layers on packed weights (evalkit/models/packed_linear.py; the panel kernel where it builds, else
oneDNN): same products as nn.Linear to fp32 rounding, every row computed as it would be alone (panels),
the default kernel wherever packing would be wrong (autograd, a changed weight), and the same greedy
tokens as the default kernel on the real SmolLM2 and real prompts. At the C boundary: an input, bias or
panel buffer the kernel would misread raises (as nn.Linear does) before C is called, and a failed build
logs one warning line naming its cause and the fallback, whose products are still right."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest
import torch

from evalkit.models import load_model
from evalkit.models import packed_linear, panel_kernel
from evalkit.models.packed_linear import (ONEDNN_KERNEL, PANEL_KERNEL, PackedLinear, best_kernel,
                                          pack_linear_layers)
from evalkit.backends.hf.generation import generate, render_prompt, tokenize_prompts
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


# The C boundary: nothing the kernel would misread reaches it, and a failed build says why, once.

class CallCounter:
    """Stands in for a kernel entry point (C's evalkit_linear, or a Python product) and counts calls."""

    def __init__(self, function):
        self.function, self.calls = function, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.function(*args, **kwargs)


@pytest.fixture
def c_calls(monkeypatch):
    """The panel kernel's library with its evalkit_linear counted (the only C entry point of product)."""
    library = panel_kernel._library
    counter = CallCounter(library.evalkit_linear)
    spy = type("LibrarySpy", (), {"evalkit_linear": staticmethod(counter),
                                  "evalkit_pack": staticmethod(library.evalkit_pack)})()
    monkeypatch.setattr(panel_kernel, "_library", spy)
    return counter


def panel_case(name: str):
    generator = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(96, 64, generator=generator), torch.randn(96, generator=generator)
    rows, panels = torch.randn(4, 64, generator=generator), panel_kernel.pack(weight)
    return {
        "in_features 63": ((rows[:, :63].contiguous(), panels, 96, bias), r"^mat1 and mat2 shapes cannot be multiplied \(4x63 and 64x96\) \(panel kernel: 6144 floats of panels"),
        "in_features 65": ((torch.randn(4, 65), panels, 96, bias), r"\(4x65 and 64x96\)"),
        "float64 rows": ((rows.double(), panels, 96, bias), r"expected 2-D torch.float32 CPU rows, got shape \(4, 64\) torch.float64"),
        "bfloat16 rows": ((rows.bfloat16(), panels, 96, bias), r"torch.bfloat16 on cpu"),
        "meta rows": ((rows.to("meta"), panels, 96, bias), r"torch.float32 on meta"),
        "sparse rows": ((rows.to_sparse(), panels, 96, bias), r"sparse_coo"),
        "3-D rows": ((rows[None], panels, 96, bias), r"got shape \(1, 4, 64\)"),
        "bias 95": ((rows, panels, 96, bias[:95]), r"expected a \(96,\) torch.float32 CPU bias, got shape \(95,\)"),
        "bias 97": ((rows, panels, 96, torch.randn(97)), r"got shape \(97,\)"),
        "bias 1x96": ((rows, panels, 96, bias[None]), r"got shape \(1, 96\)"),
        "float64 bias": ((rows, panels, 96, bias.double()), r"\(96,\) torch.float64"),
        "meta bias": ((rows, panels, 96, bias.to("meta")), r"on meta"),
        "outputs 128": ((rows, panels, 128, bias[:96]), r"\(4x64 and 48x128\) \(panel kernel: 6144 floats of panels for 128 outputs\)"),
        "outputs 200, no bias": ((rows, panels, 200, None), r"the panels hold 6144 floats, not the 224 x 64 = 14336"),
        "short panels": ((rows, panels[:-1], 96, None), r"the panels hold 6143 floats"),
        "2-D panels": ((rows, panels.view(-1, 32), 96, None), r"expected pack\(\)'s 1-D contiguous"),
        "strided panels": ((rows, torch.randn(2 * panels.numel())[::2], 96, None), r"1-D contiguous"),
        "float64 panels": ((rows, panels.double(), 96, None), r"torch.float64"),
    }[name]


@needs_panels
@pytest.mark.parametrize("name", ["in_features 63", "in_features 65", "float64 rows", "bfloat16 rows", "meta rows",
                                  "sparse rows", "3-D rows", "bias 95", "bias 97", "bias 1x96", "float64 bias",
                                  "meta bias", "outputs 128", "outputs 200, no bias", "short panels", "2-D panels",
                                  "strided panels", "float64 panels"])
def test_panel_product_refuses_what_c_would_misread_before_calling_it(name, c_calls):
    args, message = panel_case(name)
    with pytest.raises(RuntimeError, match=message):
        panel_kernel.product(*args)
    assert c_calls.calls == 0


@needs_panels
def test_panel_pack_refuses_other_weights():
    for weight, message in [(torch.randn(8, 4).double(), "torch.float64"), (torch.randn(8), r"shape \(8,\)"),
                            (torch.randn(8, 4, device="meta"), "on meta")]:
        with pytest.raises(RuntimeError, match=message):
            panel_kernel.pack(weight)


@needs_panels
def test_panel_product_copies_non_contiguous_rows_and_bias_to_the_same_result(c_calls):
    generator = torch.Generator().manual_seed(2)
    weight, rows = torch.randn(96, 64, generator=generator), torch.randn(64, 9, generator=generator).t()
    bias = torch.randn(192, generator=generator)[::2]
    assert not rows.is_contiguous() and not bias.is_contiguous()
    panels = panel_kernel.pack(weight)
    got = panel_kernel.product(rows, panels, 96, bias)
    assert torch.equal(got, panel_kernel.product(rows.contiguous(), panels, 96, bias.contiguous()))
    torch.testing.assert_close(got, torch.nn.functional.linear(rows, weight, bias), rtol=1e-5, atol=1e-5)
    assert c_calls.calls == 2


@pytest.mark.parametrize("case", ["in_features", "float64 rows", "bias 95", "1-D rows"])
def test_onednn_product_refuses_before_calling_onednn(case):
    weight, bias = torch.randn(96, 64), torch.randn(96)
    packed = packed_linear.pack_weight(weight)
    args, message = {
        "in_features": ((torch.randn(4, 63), packed, bias), r"^mat1 and mat2 shapes cannot be multiplied \(4x63 and 64x96\)$"),
        "float64 rows": ((torch.randn(4, 64).double(), packed, bias), r"torch.float64"),
        "bias 95": ((torch.randn(4, 64), packed, bias[:95]), r"expected a \(96,\) torch.float32 CPU bias"),
        "1-D rows": ((torch.randn(64), packed, bias), r"expected 2-D"),
    }[case]
    with pytest.raises(RuntimeError, match=message):
        packed_linear.packed_product(*args)


def test_onednn_product_reads_a_strided_bias_by_its_strides():
    weight, rows, bias = torch.randn(96, 64), torch.randn(64, 5).t(), torch.randn(192)[::2]
    got = packed_linear.packed_product(rows, packed_linear.pack_weight(weight), bias)
    torch.testing.assert_close(got, torch.nn.functional.linear(rows, weight, bias), rtol=1e-5, atol=1e-5)


def outcome(call):
    """What a call gives: its output's shape, dtype and device, or its error's type and message."""
    try:
        out = call()
    except Exception as exc:  # noqa: BLE001 - compared, not handled
        return type(exc).__name__, str(exc)
    return tuple(out.shape), out.dtype, out.device.type


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("x", ["in_features 63", "in_features 65 3-D", "float64", "bfloat16", "meta", "0-D"])
def test_packed_linear_refuses_as_nn_linear_does_without_reaching_a_packed_kernel(x, bias, monkeypatch):
    plain, packed = packed_pair(64, 96, bias)
    x = {"in_features 63": lambda: torch.randn(4, 63), "in_features 65 3-D": lambda: torch.randn(2, 3, 65),
         "float64": lambda: torch.randn(4, 64, dtype=torch.float64),
         "bfloat16": lambda: torch.randn(4, 64, dtype=torch.bfloat16),
         "meta": lambda: torch.randn(4, 64, device="meta"), "0-D": lambda: torch.tensor(1.0)}[x]()
    panels, onednn = CallCounter(panel_kernel.product), CallCounter(packed_linear.packed_product)
    monkeypatch.setattr(panel_kernel, "product", panels)
    monkeypatch.setattr(packed_linear, "packed_product", onednn)
    with torch.inference_mode():
        expected, got = outcome(lambda: plain(x)), outcome(lambda: packed(x))
    assert got == expected
    assert panels.calls == onednn.calls == 0
    if x.dtype == torch.float32 and x.ndim and x.device.type == "cpu":
        assert got == ("RuntimeError", f"mat1 and mat2 shapes cannot be multiplied "
                                       f"({x.numel() // x.shape[-1]}x{x.shape[-1]} and 64x96)")


def test_packed_linear_on_a_transposed_view_equals_nn_linear():
    plain, packed = packed_pair(64, 96, True)
    x = torch.randn(64, 7).t()
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), plain(x), rtol=1e-5, atol=1e-5)


@needs_panels
def test_a_bias_of_the_wrong_size_is_refused_before_c(c_calls):
    _, packed = packed_pair(64, 96, True)
    packed.bias = torch.nn.Parameter(torch.randn(95), requires_grad=False)  # not the weight: not seen as stale
    with torch.inference_mode(), pytest.raises(RuntimeError, match=r"\(96,\).*got shape \(95,\)"):
        packed(torch.randn(4, 64))
    assert c_calls.calls == 0


FAKE_COMPILER = """#!/bin/sh
# answers --version, then "compiles" a library that is not one
[ "$1" = --version ] && echo "fake cc 1.0" && exit 0
for last; do :; done
echo "not an ELF file" > "$last"
"""


@pytest.fixture
def failed_build(request, monkeypatch, tmp_path):
    """A first build that fails (how: the parameter), in a fresh cache, with the module's state restored after."""
    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("torch without OpenMP never builds the kernel")
    monkeypatch.setenv("EVALKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EVALKIT_LINEAR_KERNEL", "panels")
    monkeypatch.delenv("EVALKIT_PACKED_LINEAR", raising=False)
    for name in ("_library", "_width", "failure", "SOURCE"):
        monkeypatch.setattr(panel_kernel, name, getattr(panel_kernel, name))
    panel_kernel._library = None  # not tried yet in this process
    if request.param == "no compiler":
        monkeypatch.delenv("CC", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))  # no cc, gcc or clang there
        return "no C compiler found"
    if request.param == "compiler missing":
        monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
        return "no-such-cc' does not run: No such file or directory"
    if request.param == "compile error":
        broken = tmp_path / "panel_kernel.c"
        broken.write_text(panel_kernel.SOURCE.read_text() + "\nint evalkit_broken(void) { return undeclared_name; }\n")
        monkeypatch.setattr(panel_kernel, "SOURCE", broken)
        return "failed on panel_kernel.c: .*error: .*undeclared_name"
    fake = tmp_path / "fake-cc"
    fake.write_text(FAKE_COMPILER)
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    return "cannot load .*panel_kernel-[0-9a-f]+\\.so"


@pytest.mark.parametrize("failed_build", ["no compiler", "compiler missing", "compile error", "load error"],
                         indirect=True)
def test_a_failed_build_warns_once_with_its_cause_and_linears_run_on_onednn(failed_build, caplog):
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(), torch.nn.Linear(96, 40),
                                torch.nn.Linear(40, 8, bias=False))
    plain = [(m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
             for m in model if isinstance(m, torch.nn.Linear)]
    with caplog.at_level(logging.WARNING, logger=panel_kernel.__name__):
        assert pack_linear_layers(model) == ONEDNN_KERNEL
        assert not panel_kernel.available() and best_kernel() == ONEDNN_KERNEL
        assert pack_linear_layers(torch.nn.Sequential(torch.nn.Linear(8, 8))) == ONEDNN_KERNEL
    warnings = [r for r in caplog.records if r.name == panel_kernel.__name__]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING, caplog.text
    line = warnings[0].getMessage()
    assert "\n" not in line
    assert re.search(rf"^evalkit panel kernel unavailable \(.*{failed_build}.*\); "
                     r"fp32 CPU linear layers use oneDNN packed weights$", line), line
    x = torch.randn(5, 64)
    with torch.inference_mode():
        got = model(x)
    expected = x
    for i, (weight, bias) in enumerate(plain):
        expected = torch.nn.functional.linear(expected, weight, bias)
        expected = torch.relu(expected) if i == 0 else expected
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_failed_build_prints_one_stderr_line_per_process(tmp_path):
    """Without pytest's log capture: the warning reaches stderr (logging's last-resort handler) once."""
    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("torch without OpenMP never builds the kernel")
    script = (
        "import torch\n"
        "from evalkit.models import panel_kernel\n"
        "from evalkit.models.packed_linear import pack_linear_layers\n"
        "torch.manual_seed(0)\n"
        "model = torch.nn.Sequential(*[torch.nn.Linear(32, 32) for _ in range(3)])\n"
        "reference = torch.nn.Sequential(*[torch.nn.Linear(32, 32) for _ in range(3)])\n"
        "reference.load_state_dict(model.state_dict())\n"
        "print(pack_linear_layers(model), panel_kernel.available(), panel_kernel.available())\n"
        "x = torch.randn(4, 32)\n"
        "with torch.inference_mode():\n"
        "    torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)\n"
    )
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc"), "EVALKIT_CACHE_DIR": str(tmp_path / "cache"),
           "EVALKIT_LINEAR_KERNEL": "panels", "OMP_NUM_THREADS": "1"}
    env.pop("EVALKIT_PACKED_LINEAR", None)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [ONEDNN_KERNEL, "False", "False"]
    lines = [line for line in run.stderr.splitlines() if "panel kernel" in line]
    assert lines == ["evalkit panel kernel unavailable (C compiler "
                     f"'{tmp_path / 'no-such-cc'}' does not run: No such file or directory); "
                     "fp32 CPU linear layers use oneDNN packed weights"], run.stderr
