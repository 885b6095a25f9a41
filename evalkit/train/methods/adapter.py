"""Bottleneck adapters between layers (Houlsby et al. 2019, seed 004): evalkit's own small module.

Why hand-written: PEFT 0.21 has no bottleneck adapter, and the ``adapters`` library (AdapterHub
1.3) pins transformers 4.57 while evalkit runs on transformers 5. The module is ~60 lines.

Each decoder layer gets two adapters, one after the attention output projection and one after the
MLP down projection (Houlsby placement, before the residual add): h + up(act(down(h))). ``up``
starts at zero, so training starts from the base model exactly. The adapters are plain
submodules of the decoder layer called from forward hooks, so base weight names never change.

Saved checkpoint: ``evalkit_adapter_config.json`` (base model path, size, placement) and
``adapter_model.safetensors`` (adapter weights only); evalkit.models.loader loads it.
"""

from __future__ import annotations

import json
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.train.methods.base import Method

CONFIG_NAME = "evalkit_adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PLACEMENT = {"attn_adapter": "self_attn.o_proj", "mlp_adapter": "mlp.down_proj"}


def _bottleneck(hidden: int, size: int):
    import torch

    class Bottleneck(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.down = torch.nn.Linear(hidden, size)
            self.up = torch.nn.Linear(size, hidden)
            torch.nn.init.zeros_(self.up.weight)
            torch.nn.init.zeros_(self.up.bias)

        def forward(self, h):
            return h + self.up(torch.nn.functional.gelu(self.down(h)))

    return Bottleneck()


def attach(model, size: int):
    """Add the adapters to every decoder layer (weights of the base untouched) and return the model."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise EvalkitError(f"adapter: cannot find the decoder layers of {type(model).__name__} (expected model.layers)")
    hidden = model.config.hidden_size
    for layer in layers:
        for name, target in PLACEMENT.items():
            module = layer.get_submodule(target)
            adapter = _bottleneck(hidden, size).to(device=module.weight.device, dtype=module.weight.dtype)
            layer.add_module(name, adapter)
            module.register_forward_hook(lambda _m, _inputs, output, adapter=adapter: adapter(output))
    return model


def prepare_adapter(model, recipe):
    for param in model.parameters():
        param.requires_grad_(False)
    attach(model, recipe.adapter_size)
    for name, param in model.named_parameters():
        param.requires_grad_(any(f".{n}." in name for n in PLACEMENT))
    return model


def adapter_state(model) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if any(f".{n}." in k for n in PLACEMENT)}


def save(model, directory: Path, base_model: str, size: int) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(model), str(directory / WEIGHTS_NAME))
    config = {"type": "bottleneck_adapter", "base_model_name_or_path": base_model, "adapter_size": size,
              "placement": PLACEMENT, "activation": "gelu"}
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")


def load_into(model, directory: Path) -> dict:
    """Attach the adapters described in ``directory`` to a loaded base model and load their weights."""
    from safetensors.torch import load_file

    config = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
    attach(model, int(config["adapter_size"]))
    weights = load_file(str(directory / WEIGHTS_NAME))
    expected = set(adapter_state(model))
    if set(weights) != expected:
        raise EvalkitError(f"{directory / WEIGHTS_NAME}: adapter weights do not match this base model "
                           f"({len(set(weights) ^ expected)} tensors differ); retrain or pick the right base")
    model.load_state_dict(weights, strict=False)
    return config


METHODS = [Method("adapter", prepare_adapter, saves="evalkit_adapter", description="bottleneck adapters (Houlsby)")]
