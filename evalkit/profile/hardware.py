"""What a figure was measured on: CPU model and cores, memory, GPU name. Stored with every profile."""

from __future__ import annotations

import os
import platform

from evalkit.results import cpu_model


def hardware() -> dict:
    import psutil

    info = {
        "cpu": cpu_model(),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "machine": platform.machine(),
        "gpu": None,
        "gpu_count": 0,
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu_count"] = torch.cuda.device_count()
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:  # profiling a non-torch workload still records the CPU
        pass
    return info
