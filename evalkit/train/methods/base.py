"""What every method provides, and the target-module check they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from evalkit.errors import EvalkitError


def _nothing(*_args) -> dict:
    return {}


@dataclass(frozen=True)
class Method:
    name: str
    prepare: Callable[[Any, Any], Any]  # (model, recipe) -> model to train
    saves: str  # "peft" (adapter dir), "full" (transformers dir) or "evalkit_adapter" (see adapter.py)
    load_kwargs: Callable[[Any], dict] = _nothing  # (recipe) -> from_pretrained kwargs
    training_args: Callable[[Any], dict] = _nothing  # (recipe) -> TrainingArguments kwargs
    optimizer: Callable[[Any, Any], Any] | None = None  # (model, recipe) -> torch optimizer
    description: str = ""


def linear_module_names(model) -> list[str]:
    """Short names (q_proj, down_proj ...) of the Linear layers inside the decoder, LM head excluded."""
    import torch

    names = set()
    for full_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__.startswith("Linear"):
            short = full_name.rsplit(".", 1)[-1]
            if short and short != "lm_head" and not full_name.startswith("lm_head"):
                names.add(short)
    return sorted(names)


def module_names(model) -> set[str]:
    names = set()
    for full_name, _ in model.named_modules():
        parts = full_name.split(".")
        names.update(parts)
    return names


def check_targets(model, targets: str | list[str], option: str, *, linear_only: bool = True) -> list[str] | str:
    """Return targets as a list (or "all"); fail with one line if a name is not in the model."""
    if targets == "all":
        return "all"
    names = [targets] if isinstance(targets, str) else list(targets)
    names = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    available = linear_module_names(model) if linear_only else sorted(module_names(model))
    missing = [n for n in names if n not in available]
    if missing or not names:
        raise EvalkitError(f"{option}: module {', '.join(missing) or '(empty)'} does not exist in the model; "
                           f"use all or some of {', '.join(available)}")
    return names
