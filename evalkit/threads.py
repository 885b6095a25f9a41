"""How many CPU threads torch uses: ``--threads N|auto``.

On a shared CPU, OpenMP threads that spin while they wait for a busy core make two threads several
times slower than one (measured on this 2-core machine: 6-50 s per question with two threads against
~1 s with one, at load 6-25). ``auto`` therefore takes the cores that are idle now, and OpenMP waits
passively (``OMP_WAIT_POLICY=PASSIVE``) so a thread whose partner is descheduled sleeps instead of
burning the core the other process needs.

"Idle now" is the cores' idle time sampled over a short window (psutil reads /proc/stat twice), not the
load average: that lags by minutes, so right after a set-up step it still counted a core as busy.
"""

from __future__ import annotations

import os


def passive_openmp() -> None:
    """Before torch loads (OpenMP reads it once): waiting threads yield the CPU. A user's setting wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


SAMPLE_SECONDS = 0.2
last_sample: dict | None = None  # what the last ``auto`` saw, for the results (``config.threads_seen``)


def idle_cores(window: float = SAMPLE_SECONDS) -> tuple[int, float]:
    """(cores this process may use, how many of them were idle over ``window`` seconds)."""
    import psutil

    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    busy = psutil.cpu_percent(interval=window, percpu=True)
    idle = sum(max(0.0, 100.0 - busy[core]) / 100.0 for core in allowed if core < len(busy))
    return len(allowed), idle


def auto_threads() -> int:
    global last_sample
    cores, idle = idle_cores()
    count = max(1, min(cores, int(idle + 0.5)))  # a core more than half idle counts as free
    last_sample = {"cores": cores, "idle_cores": round(idle, 2), "window_s": SAMPLE_SECONDS, "threads": count}
    return count


def set_threads(choice: str | int | None) -> int:
    """Apply ``--threads``; None keeps torch's default (or $OMP_NUM_THREADS). Returns the count in use."""
    import torch

    if choice is None:
        return torch.get_num_threads()
    count = auto_threads() if choice == "auto" else int(choice)
    torch.set_num_threads(count)
    return count
