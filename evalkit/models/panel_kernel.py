"""Builds, caches and calls ``panel_kernel.c``, evalkit's fp32 CPU linear kernel (why: the C file's header).

The C file is compiled once per machine with the system C compiler (``$CC``, ``cc``, ``gcc`` or
``clang``) and ``-march=native`` into evalkit's cache, keyed by the source, the flags, the compiler and
the CPU (a cache shared between machines never hands one CPU another's instructions). It is called
through ctypes; its OpenMP loop uses torch's own OpenMP runtime (the library's ``libgomp.so.1``
resolves to the copy torch has loaded) with torch's thread count, so no second thread pool spins.
No compiler, a failed build or a result that disagrees with ``F.linear`` on a check product means
``available()`` is False and the caller keeps oneDNN.
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


def available() -> bool:
    return _load() is not None


def pack(weight: torch.Tensor) -> torch.Tensor:
    """An (out, in) fp32 weight as panels of ``panel_width()`` output columns, zero-padded (1-D)."""
    library = _load()
    outputs, inputs = weight.shape
    width = library.evalkit_panel_width()
    weight = weight.detach().contiguous()
    panels = torch.empty(-(-outputs // width) * width * inputs, dtype=torch.float32)
    library.evalkit_pack(weight.data_ptr(), outputs, inputs, panels.data_ptr())
    return panels


def product(rows: torch.Tensor, panels: torch.Tensor, outputs: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(rows, weight, bias)`` for 2-D fp32 ``rows`` on ``pack(weight)``."""
    rows = rows.contiguous()
    out = torch.empty(rows.shape[0], outputs, dtype=torch.float32)
    bias_pointer = bias.contiguous().data_ptr() if bias is not None else None
    _library.evalkit_linear(rows.data_ptr(), rows.shape[0], rows.shape[1], panels.data_ptr(), outputs,  # type: ignore[union-attr]
                            bias_pointer, out.data_ptr(), torch.get_num_threads())
    return out


def _load() -> ctypes.CDLL | None:
    global _library
    if _library is None:
        _library = _build_and_check() or False
    return _library or None


def _cpu_identity() -> str:
    try:  # the flags line says which instructions -march=native may use
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags", "Features"))}))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _build_and_check() -> ctypes.CDLL | None:
    if "OpenMP" not in torch.__config__.parallel_info():
        return None  # a second threading runtime beside torch's would fight it for the cores
    compiler = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if compiler is None:
        return None
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
        source = SOURCE.read_bytes()
        key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), version.encode(),
                                         _cpu_identity().encode()])).hexdigest()[:16]
        from evalkit.cache import cache_dir

        target = cache_dir() / "kernels" / f"panel_kernel-{key}.so"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                built = Path(tmp) / target.name
                subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built)], check=True, capture_output=True,
                               timeout=300)
                os.replace(built, target)  # atomic: concurrent first runs each publish a whole file
        library = ctypes.CDLL(str(target))
    except Exception as exc:  # no compiler that works, an unwritable cache, a library that does not load
        log.info("panel kernel unavailable (%s); linear layers stay on oneDNN", exc)
        return None
    int64, pointer = ctypes.c_int64, ctypes.c_void_p
    library.evalkit_panel_width.restype = ctypes.c_int
    library.evalkit_pack.argtypes = [pointer, int64, int64, pointer]
    library.evalkit_linear.argtypes = [pointer, int64, int64, pointer, int64, pointer, pointer, ctypes.c_int]
    global _library
    _library = library
    generator = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(37, 70, generator=generator), torch.randn(37, generator=generator)
    rows = torch.randn(11, 70, generator=generator)
    if not torch.allclose(product(rows, pack(weight), 37, bias), torch.nn.functional.linear(rows, weight, bias),
                          rtol=1e-4, atol=1e-4):
        log.warning("panel kernel %s disagrees with F.linear; linear layers stay on oneDNN", target)
        return None
    return library
