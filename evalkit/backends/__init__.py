"""Backends: where the numbers are computed. ``--backend hf|openai|vllm``; see backends/base.py."""

from __future__ import annotations

import importlib

from evalkit.backends.base import Backend, BackendOptions, TASK_TYPES
from evalkit.errors import EvalkitError

# Imported on demand: each backend's libraries (openai, vllm) are needed only when it is chosen.
BACKENDS = {"hf": "evalkit.backends.hf:HFBackend", "openai": "evalkit.backends.openai_api:OpenAIBackend",
            "vllm": "evalkit.backends.vllm:VLLMBackend"}


def backend_class(name: str):
    if name not in BACKENDS:
        raise EvalkitError(f"unknown --backend {name!r}; use one of {', '.join(BACKENDS)}")
    module, attr = BACKENDS[name].split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if exc.name and not exc.name.startswith("evalkit"):
            raise EvalkitError(f"--backend {name} needs the Python package {exc.name!r}, which is not installed; "
                               f"install it (pip install 'evalkit[{name}]')") from None
        raise


def load_backend(name: str, model: str, options: BackendOptions) -> Backend:
    return backend_class(name).load(model, options)


__all__ = ["Backend", "BackendOptions", "BACKENDS", "TASK_TYPES", "backend_class", "load_backend"]
