"""Profiling: memory, wall time per phase, tokens/s and perplexity, with the hardware they ran on.

Use it around any workload::

    from evalkit.profile import Profiler

    with Profiler() as prof:
        with prof.phase("model_load"):
            lm = load_model(...)
        with prof.phase("train"):
            ...
        prof.add_tokens("train", n_tokens, seconds)
    record = prof.result()  # a JSON-able dict, stored with the run
"""

from evalkit.profile.hardware import hardware
from evalkit.profile.profiler import Profiler, format_profile

__all__ = ["Profiler", "format_profile", "hardware"]
