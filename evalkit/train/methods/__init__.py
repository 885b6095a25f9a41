"""Fine-tuning methods: each family is one small module exposing ``Method`` objects.

A method turns a freshly loaded base model into the model the Trainer optimises (freezing,
wrapping with PEFT, attaching adapters), may ask for load-time options (quantisation), training
arguments (GaLore's optimiser) or its own optimiser (LoRA+), and says how its checkpoint is saved.
"""

from __future__ import annotations

from evalkit.errors import EvalkitError
from evalkit.train.methods.base import Method, check_targets, linear_module_names
from evalkit.train.methods import adapter, full, galore, lora, prefix

METHODS: dict[str, Method] = {m.name: m for family in (full, lora, galore, prefix, adapter) for m in family.METHODS}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise EvalkitError(f"unknown method {name!r}; use one of {', '.join(METHODS)}") from None


__all__ = ["METHODS", "Method", "get_method", "check_targets", "linear_module_names"]
