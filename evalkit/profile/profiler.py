"""``Profiler``: wall time per phase, peak memory (RSS, CUDA allocated/reserved) and tokens/s.

Peak RSS is the kernel's high-water mark (VmHWM), reset when the profiler starts, so a figure
covers only the profiled work even in a long-lived process (tests, notebooks).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

from evalkit.profile.hardware import hardware

STATUS = Path("/proc/self/status")


def _reset_peak_rss() -> bool:
    try:  # Linux >= 4.0: writing 5 resets the peak resident set size of this process
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource  # fallback: peak since the process started (kilobytes on Linux)

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda if torch.cuda.is_available() else None


class Profiler:
    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.tokens: dict[str, dict] = {}  # kind (prefill/decode/train) -> {"tokens", "seconds"}
        self.extra: dict = {}
        self._started = None
        self._wall = None
        self._memory: dict = {}

    def __enter__(self) -> "Profiler":
        self._rss_reset = _reset_peak_rss()
        cuda = _cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._wall = time.perf_counter() - self._started
        self._memory = self.memory()

    @contextmanager
    def phase(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - started

    def add_tokens(self, kind: str, tokens: int, seconds: float) -> None:
        """Count ``tokens`` processed in ``seconds`` as ``kind`` (prefill, decode or train)."""
        entry = self.tokens.setdefault(kind, {"tokens": 0, "seconds": 0.0})
        entry["tokens"] += int(tokens)
        entry["seconds"] += float(seconds)

    def memory(self) -> dict:
        figures = {"peak_rss_mb": round(_peak_rss_bytes() / 2**20, 1),
                   "peak_rss_scope": "profiled work" if getattr(self, "_rss_reset", False) else "process lifetime"}
        cuda = _cuda()
        if cuda is not None:
            figures["cuda_max_allocated_mb"] = round(cuda.max_memory_allocated() / 2**20, 1)
            figures["cuda_max_reserved_mb"] = round(cuda.max_memory_reserved() / 2**20, 1)
        return figures

    def result(self) -> dict:
        wall = self._wall if self._wall is not None else time.perf_counter() - self._started
        throughput = {}
        for kind, entry in self.tokens.items():
            rate = entry["tokens"] / entry["seconds"] if entry["seconds"] > 0 else None
            throughput[kind] = {"tokens": entry["tokens"], "seconds": round(entry["seconds"], 6),
                                "tokens_per_s": round(rate, 1) if rate is not None else None}
            if entry.get("includes_prefill"):
                throughput[kind]["includes_prefill"] = True
        return {
            "wall_s": round(wall, 3),
            "model_load_s": round(self.phases["model_load"], 3) if "model_load" in self.phases else None,
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "memory": self._memory or self.memory(),
            "throughput": throughput,
            "hardware": hardware(),
            **self.extra,
        }


def rate_text(per_second: float) -> str:
    """Three significant figures: 1.27, 12.7, 127, 1,270 (whole numbers made slow rates read "1 tok/s")."""
    if per_second >= 100:
        return f"{per_second:,.0f}"
    return f"{per_second:.{2 if per_second < 10 else 1}f}"


def format_profile(profile: dict) -> str:
    """One line for the terminal: peak memory, load time, tokens/s."""
    memory = profile.get("memory", {})
    parts = [f"peak RSS {memory.get('peak_rss_mb', 0):.0f} MB"]
    if "cuda_max_allocated_mb" in memory:
        parts.append(f"CUDA max allocated {memory['cuda_max_allocated_mb']:.0f} MB / reserved {memory['cuda_max_reserved_mb']:.0f} MB")
    if profile.get("model_load_s") is not None:
        parts.append(f"model load {profile['model_load_s']:.1f} s")
    for kind, entry in profile.get("throughput", {}).items():
        if entry.get("tokens_per_s") is not None:
            note = " incl. prefill" if entry.get("includes_prefill") else ""
            parts.append(f"{kind} {rate_text(entry['tokens_per_s'])} tok/s ({entry['tokens']:,} tokens{note})")
    if profile.get("perplexity") is not None:
        parts.append(f"perplexity {profile['perplexity']:.3f}")
    parts.append(f"wall {profile.get('wall_s', 0):.1f} s")
    hw = profile.get("hardware", {})
    where = hw.get("gpu") or f"{hw.get('cpu')} x{hw.get('cpu_affinity') or hw.get('cpu_logical_cores')}"
    return "profile: " + ", ".join(parts) + f" [{where}]"
