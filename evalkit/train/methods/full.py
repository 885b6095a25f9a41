"""Full fine-tuning, and freeze tuning (only the last N decoder layers, or named modules, learn)."""

from __future__ import annotations

from evalkit.errors import EvalkitError
from evalkit.train.methods.base import Method, check_targets


def prepare_full(model, recipe):
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def decoder_layers(model):
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise EvalkitError(f"freeze: cannot find the decoder layers of {type(model).__name__} (expected model.layers)")
    return layers


def prepare_freeze(model, recipe):
    """LLaMA-Factory's freeze tuning: everything frozen except the last N layers (optionally only named modules there)."""
    layers = decoder_layers(model)
    count = recipe.freeze_trainable_layers
    if not 1 <= count <= len(layers):
        raise EvalkitError(f"freeze_trainable_layers={count}: the model has {len(layers)} layers; use 1..{len(layers)}")
    modules = check_targets(model, recipe.freeze_trainable_modules, "freeze_trainable_modules", linear_only=False)
    first = len(layers) - count
    trainable = 0
    for name, param in model.named_parameters():
        parts = name.split(".")
        in_layer = "layers" in parts and int(parts[parts.index("layers") + 1]) >= first
        wanted = in_layer and (modules == "all" or any(m in parts for m in modules))
        param.requires_grad_(wanted)
        trainable += param.numel() if wanted else 0
    if trainable == 0:
        raise EvalkitError(f"freeze_trainable_modules={recipe.freeze_trainable_modules}: no parameter of the last {count} layers matches")
    return model


METHODS = [
    Method("full", prepare_full, saves="full", description="all parameters"),
    Method("freeze", prepare_freeze, saves="full", description="last N decoder layers (or named modules in them)"),
]
