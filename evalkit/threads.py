"""How many CPU threads torch uses: ``--threads N|auto``.

On a shared CPU, OpenMP threads that spin while they wait for a busy core make two threads several
times slower than one (measured on this 2-core machine: 6-50 s per question with two threads against
~1 s with one, at load 6-25). ``auto`` therefore takes the cores that are idle now (cores minus the
one-minute load average, at least one), and OpenMP waits passively (``OMP_WAIT_POLICY=PASSIVE``) so a
thread whose partner is descheduled sleeps instead of burning the core the other process needs.
"""

from __future__ import annotations

import os


def passive_openmp() -> None:
    """Before torch loads (OpenMP reads it once): waiting threads yield the CPU. A user's setting wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def auto_threads() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


def set_threads(choice: str | int | None) -> int:
    """Apply ``--threads``; None keeps torch's default (or $OMP_NUM_THREADS). Returns the count in use."""
    import torch

    if choice is None:
        return torch.get_num_threads()
    count = auto_threads() if choice == "auto" else int(choice)
    torch.set_num_threads(count)
    return count
