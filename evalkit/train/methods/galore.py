"""GaLore: full-parameter training with gradients projected to low rank (transformers + galore-torch)."""

from __future__ import annotations

import importlib.util

from evalkit.errors import EvalkitError
from evalkit.train.methods.base import Method, check_targets
from evalkit.train.methods.full import prepare_full


def prepare_galore(model, recipe):
    if importlib.util.find_spec("galore_torch") is None:
        raise EvalkitError("method galore needs galore-torch: pip install galore-torch")
    check_targets(model, recipe.galore_target, "galore_target")
    return prepare_full(model, recipe)


def galore_args(recipe) -> dict:
    targets = recipe.galore_target
    modules = "all-linear" if targets == "all" else ([targets] if isinstance(targets, str) else list(targets))
    return {
        "optim": "galore_adamw",
        "optim_target_modules": modules,
        "optim_args": f"rank={recipe.galore_rank},update_proj_gap={recipe.galore_update_interval},scale={recipe.galore_scale}",
    }


METHODS = [Method("galore", prepare_galore, saves="full", training_args=galore_args,
                  description="full weights, GaLore low-rank gradient projection")]
