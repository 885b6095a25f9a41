"""A checkpoint directory's files checked against each other before transformers allocates anything.

transformers builds the model from config.json first and fills it from the weights after: a config that says
``num_hidden_layers: 100000`` beside a 30-layer checkpoint allocates for minutes before it fails. Reading the
safetensors headers (names and shapes, no data) is cheap, so the sizes are compared here first.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from evalkit.errors import EvalkitError

CONFIG_MAX_BYTES = 16 << 20  # real configs are kilobytes; a bigger one is not a config
# Where the per-layer index sits in common architectures' weight names (llama/qwen/gemma, gpt2, gpt-neox/falcon).
_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


def check_safetensors(directory: Path) -> None:
    """Fail with one line naming the file if a safetensors file is truncated or corrupt."""
    _tensor_shapes(directory)


def _tensor_shapes(directory: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    shapes: dict[str, list[int]] = {}
    for file in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as handle:
                keys = list(handle.keys())
                for key in keys:
                    shapes[key] = list(handle.get_slice(key).get_shape())
                if keys:  # reading the last tensor touches the end of the data buffer
                    handle.get_slice(keys[-1])
        except Exception as exc:
            raise EvalkitError(
                f"{file}: corrupt or truncated safetensors file ({exc}); re-download or re-export the checkpoint"
            ) from None
    return shapes


def read_config(directory: Path) -> dict | None:
    """config.json as a mapping (None when absent), bounded in size, one line when it is not JSON."""
    path = directory / "config.json"
    if not path.is_file():
        return None
    if path.stat().st_size > CONFIG_MAX_BYTES:
        raise EvalkitError(f"{path}: {path.stat().st_size} bytes, not a model config; restore the checkpoint's config.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EvalkitError(f"{path}: not valid JSON ({type(exc).__name__}); restore the checkpoint's config.json") from None
    if not isinstance(config, dict):
        raise EvalkitError(f"{path}: must be a JSON object; restore the checkpoint's config.json")
    return config


def check_checkpoint(directory: Path) -> None:
    """Safetensors files readable, and config.json's layer count and sizes matching the weights they describe."""
    shapes = _tensor_shapes(directory)
    config = read_config(directory)
    if not shapes or config is None:
        return  # nothing to compare (.bin weights, or transformers reports the missing config itself)
    path = directory / "config.json"
    layers = {int(match.group(1)) for key in shapes if (match := _LAYER_INDEX.search(key))}
    for key in _LAYER_KEYS:
        declared = config.get(key)
        if declared is None:
            continue
        if type(declared) is not int or declared < 1:
            raise EvalkitError(f"{path}: {key} must be a positive integer, got {declared!r}; restore the checkpoint's config.json")
        # More layers than the weights hold would be allocated and left at random init; fewer is tolerated
        # (some checkpoints carry extra prediction layers past the declared count).
        if layers and declared > max(layers) + 1:
            raise EvalkitError(f"{path}: {key} is {declared} but the weights hold {max(layers) + 1} layers; "
                               "restore the checkpoint's config.json or re-export the checkpoint")
        break
    embedding = next((shape for name, shape in shapes.items() if name.endswith("embed_tokens.weight")), None)
    if embedding is not None and len(embedding) == 2:
        checked = [("vocab_size", embedding[0])]
        if not any(key in config for key in ("word_embed_proj_dim", "embedding_size")):  # OPT, ALBERT: own width
            checked.append(("hidden_size", embedding[1]))
        for key, size in checked:
            declared = config.get(key)
            if declared is not None and declared != size:
                raise EvalkitError(f"{path}: {key} is {declared!r} but the embedding weights have {size}; "
                                   "restore the checkpoint's config.json or re-export the checkpoint")
