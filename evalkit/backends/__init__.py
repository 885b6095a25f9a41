"""Backends: where the numbers are computed (``--backend NAME``). The contract: backends/base.py.

This registry is the only list of backends: ``evalkit run --backend`` takes its names, and a new backend
is its module plus one line here (docs/new_backend.md).
"""

from __future__ import annotations

import importlib

from evalkit.backends.base import TASK_TYPES, Backend, BackendOptions
from evalkit.errors import EvalkitError

# name -> "module:Class", imported on demand: each backend's libraries (openai, vllm) load only when chosen.
BACKENDS = {
    "hf": "evalkit.backends.hf:HFBackend",
    "openai": "evalkit.backends.openai_api:OpenAIBackend",
    "vllm": "evalkit.backends.vllm:VLLMBackend",
    "fake": "evalkit.backends.fake:FakeBackend",
}
DEFAULT_BACKEND = "hf"


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise EvalkitError(f"unknown --backend {name!r}; use one of {', '.join(BACKENDS)}")
    module, attr = BACKENDS[name].split(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if exc.name and not exc.name.startswith("evalkit"):
            raise EvalkitError(f"--backend {name} needs the Python package {exc.name!r}, which is not installed; "
                               f"install it (pip install 'evalkit[{name}]')") from None
        raise
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{BACKENDS[name]} is not a subclass of evalkit.backends.base.Backend")
    return cls


def load_backend(name: str, model: str, options: BackendOptions, **kwargs) -> Backend:
    return backend_class(name).load(model, options, **kwargs)


__all__ = ["Backend", "BackendOptions", "BACKENDS", "DEFAULT_BACKEND", "TASK_TYPES", "backend_class", "load_backend"]
