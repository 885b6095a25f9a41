"""Builds, caches and calls ``panel_kernel.c``, evalkit's fp32 CPU linear kernel (how it works: the C file's header).

The C file is compiled once per machine with the system C compiler (``$CC``, ``cc``, ``gcc`` or
``clang``) and ``-march=native`` into evalkit's cache, keyed by the source, the flags, the compiler and
the CPU (a cache shared between machines never hands one CPU another's instructions). It is called
through ctypes; its OpenMP loop uses torch's own OpenMP runtime (the library's ``libgomp.so.1``
resolves to the copy torch has loaded) with torch's thread count, so no second thread pool spins.
No compiler, a failed build or a result that disagrees with ``F.linear`` on a check product means
``available()`` is False and the caller keeps oneDNN; the first ``available()`` then logs one WARNING
line naming the cause and the fallback (once per process: the outcome is cached).

The C functions trust their arguments, so ``pack`` and ``product`` check dtype, device, layout and
every size the C code will read or write before a pointer crosses; a mismatch raises ``RuntimeError``
(the exception ``nn.Linear`` raises) and never reaches C.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("panel_kernel.c")
FLAGS = ["-O3", "-march=native", "-ffp-contract=fast", "-fopenmp", "-shared", "-fPIC"]
log = logging.getLogger(__name__)
_library: ctypes.CDLL | None | bool = None  # None: not tried yet; False: unavailable
_width = 0  # evalkit_panel_width() of the loaded library: output columns per panel
failure: str | None = None  # why the last build or check failed, for the warning (None: it did not)
_FP32, _STRIDED = torch.float32, torch.strided  # bound once: product's checks run on every call


def available() -> bool:
    return _load() is not None


def pack(weight: torch.Tensor) -> torch.Tensor:
    """An (out, in) fp32 weight as panels of ``evalkit_panel_width()`` output columns, zero-padded (1-D)."""
    library = _load()
    if library is None:
        raise RuntimeError(f"the panel kernel is not available ({failure}); pack with packed_linear.pack_weight")
    if not _fp32_cpu(weight) or weight.ndim != 2:
        raise RuntimeError(f"panel_kernel.pack: expected a 2-D torch.float32 CPU weight, got {_describe(weight)}")
    outputs, inputs = weight.shape
    weight = weight.detach().contiguous()  # a copy where it is not: C reads w[n * inputs + k]
    panels = torch.empty(-(-outputs // _width) * _width * inputs, dtype=torch.float32)
    library.evalkit_pack(weight.data_ptr(), outputs, inputs, panels.data_ptr())
    return panels


def product(rows: torch.Tensor, panels: torch.Tensor, outputs: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(rows, weight, bias)`` for 2-D fp32 ``rows`` on ``pack(weight)`` (``outputs``: the weight's rows).

    Checked before C sees a pointer (a few attribute reads): rows, panels and bias are torch.float32
    CPU strided tensors; rows 2-D and panels 1-D and contiguous; the panels hold exactly what C reads
    for ``outputs`` and ``rows.shape[1]`` in_features; bias is ``(outputs,)``. Non-contiguous rows or
    bias are copied (the product is the same, bit for bit: the kernel sees the same values in the same
    order); a mismatch raises ``RuntimeError`` as ``F.linear`` would. The output is allocated here, as
    ``rows.shape[0] x outputs`` fp32, from the checked sizes.
    """
    library = _library
    if not library:
        raise RuntimeError(f"the panel kernel is not loaded (panel_kernel.available() is False: {failure})")
    if not (rows.is_cpu and rows.dtype is _FP32 and rows.layout is _STRIDED and rows.ndim == 2):
        raise RuntimeError(f"panel_kernel.product: expected 2-D torch.float32 CPU rows, got {_describe(rows)}")
    if not (panels.is_cpu and panels.dtype is _FP32 and panels.layout is _STRIDED
            and panels.ndim == 1 and panels.is_contiguous()):
        raise RuntimeError(f"panel_kernel.product: expected pack()'s 1-D contiguous torch.float32 CPU panels, "
                           f"got {_describe(panels)}")
    count, inputs = rows.shape
    padded = -(-outputs // _width) * _width  # C reads padded x inputs floats of panels
    if panels.numel() != padded * inputs or outputs < 0:
        raise RuntimeError(_shape_mismatch(count, inputs, panels.numel(), outputs, padded))
    if bias is not None:
        if not (bias.is_cpu and bias.dtype is _FP32 and bias.layout is _STRIDED
                and bias.shape == (outputs,)):
            raise RuntimeError(f"panel_kernel.product: expected a ({outputs},) torch.float32 CPU bias, "
                               f"got {_describe(bias)}")
        bias = bias.contiguous()
    rows = rows.contiguous()
    out = torch.empty(count, outputs, dtype=torch.float32)
    library.evalkit_linear(rows.data_ptr(), count, inputs, panels.data_ptr(), outputs,
                           bias.data_ptr() if bias is not None else None, out.data_ptr(), torch.get_num_threads())
    return out


def _fp32_cpu(tensor) -> bool:
    return (isinstance(tensor, torch.Tensor) and tensor.is_cpu and tensor.dtype is torch.float32
            and tensor.layout is torch.strided)


def _describe(tensor) -> str:
    if not isinstance(tensor, torch.Tensor):
        return type(tensor).__name__
    layout = "" if tensor.layout is torch.strided else f" {tensor.layout}"
    return f"shape {tuple(tensor.shape)} {tensor.dtype}{layout} on {tensor.device}"


def _shape_mismatch(count: int, inputs: int, floats: int, outputs: int, padded: int) -> str:
    """F.linear's message where the panels say how many in_features they hold, else what they hold."""
    if padded > 0 and floats % padded == 0:
        return (f"mat1 and mat2 shapes cannot be multiplied ({count}x{inputs} and {floats // padded}x{outputs}) "
                f"(panel kernel: {floats} floats of panels for {outputs} outputs)")
    return (f"panel_kernel.product: the panels hold {floats} floats, not the {max(padded, 0)} x {inputs} "
            f"= {max(padded, 0) * inputs} that {outputs} outputs (in panels of {_width}) and {count}x{inputs} "
            "rows read")


def _load() -> ctypes.CDLL | None:
    global _library
    if _library is None:
        _library = _build_and_check() or False
        if not _library:  # once per process: the outcome stays cached in _library
            from evalkit.models.packed_linear import packing_available

            fallback = "oneDNN packed weights" if packing_available() else "torch's default kernel"
            log.warning("evalkit panel kernel unavailable (%s); fp32 CPU linear layers use %s", failure, fallback)
    return _library or None


def _cpu_identity() -> str:
    try:  # the flags line says which instructions -march=native may use
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags", "Features"))}))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _first_error_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return next((line for line in lines if "error" in line.lower()), lines[0] if lines else "no output")


def _fail(cause: str) -> None:
    global failure
    failure = cause.splitlines()[0] if cause else "unknown cause"  # one line: the warning is one line
    return None


def _build_and_check() -> ctypes.CDLL | None:
    """The compiled, loaded and checked library, or None with ``failure`` saying why."""
    global failure, _library, _width
    failure = None
    if "OpenMP" not in torch.__config__.parallel_info():
        # a second threading runtime beside torch's would fight it for the cores
        return _fail("torch is built without OpenMP")
    compiler = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if compiler is None:
        return _fail("no C compiler found ($CC unset, none of cc, gcc, clang on PATH)")
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return _fail(f"C compiler {compiler!r} does not run: {exc.strerror if isinstance(exc, OSError) else exc}")
    try:
        source = SOURCE.read_bytes()
        key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), version.encode(),
                                         _cpu_identity().encode()])).hexdigest()[:16]
        from evalkit.cache import cache_dir

        target = cache_dir() / "kernels" / f"panel_kernel-{key}.so"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                built = Path(tmp) / target.name
                run = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built)], capture_output=True,
                                     text=True, timeout=300)
                if run.returncode != 0:
                    return _fail(f"{compiler} failed on {SOURCE.name}: {_first_error_line(run.stderr + run.stdout)}")
                os.replace(built, target)  # atomic: concurrent first runs each publish a whole file
    except Exception as exc:  # an unwritable cache, a compiler that hangs
        return _fail(f"building {SOURCE.name}: {exc}")
    try:
        library = ctypes.CDLL(str(target))
        int64, pointer = ctypes.c_int64, ctypes.c_void_p
        library.evalkit_panel_width.restype = ctypes.c_int
        library.evalkit_pack.argtypes = [pointer, int64, int64, pointer]
        library.evalkit_linear.argtypes = [pointer, int64, int64, pointer, int64, pointer, pointer, ctypes.c_int]
    except (OSError, AttributeError) as exc:  # not a loadable library, or one without the kernel's functions
        return _fail(f"cannot load {target.name}: {exc}")  # ctypes' message names the path
    _width = library.evalkit_panel_width()
    _library = library  # product and pack run on it for the check
    generator = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(37, 70, generator=generator), torch.randn(37, generator=generator)
    rows = torch.randn(11, 70, generator=generator)
    if not torch.allclose(product(rows, pack(weight), 37, bias), torch.nn.functional.linear(rows, weight, bias),
                          rtol=1e-4, atol=1e-4):
        _library = None
        return _fail(f"{target} disagrees with F.linear on a check product")
    return library
