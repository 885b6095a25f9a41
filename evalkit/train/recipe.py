"""A training recipe: one YAML file read into a typed dataclass (torchtune style); the built-in
recipes are ``trainers/*.yaml`` (shipped in ``evalkit/resources/trainers``).

``evalkit train trainers/lora.yaml max_steps=10 learning_rate=1e-3`` overrides keys from the
command line; values are parsed as YAML scalars so ``true``, ``5`` and ``[q_proj, v_proj]`` work.
Option names follow LLaMA-Factory where it has one (lora_rank, lora_target, cutoff_len ...).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evalkit.errors import EvalkitError
from evalkit.resources import builtin_file
from evalkit.yaml_files import read_yaml

STAGES = ("sft", "pt", "dpo")
FORMATS = ("auto", "alpaca", "sharegpt", "text", "pairwise")
TRUNCATIONS = ("llamafactory", "keep_prompt")  # see evalkit.train.data.truncate_turns


@dataclass
class Recipe:
    # what to train
    model: str = "smollm2-135m-instruct"  # embedded alias, local dir, .gguf or hub id
    method: str = "lora"  # see evalkit.train.methods.METHODS
    stage: str = "sft"  # sft | pt (plain-text continued pre-training) | dpo
    output_dir: str = "checkpoints/run"

    # data
    dataset: str = "tasks/data/sft/alpaca_zh_demo.json"  # local JSON/JSONL/TXT or a hub dataset id
    dataset_format: str = "auto"  # auto | alpaca | sharegpt | text | pairwise
    dataset_range: list[int] | None = None  # [start, end) records used for train+validation
    max_samples: int | None = None  # keep the first N records of the range (quick runs)
    val_size: float = 0.0  # fraction (<1) or count (>=1) of the range held out as a fixed validation split
    cutoff_len: int = 512  # tokens per sample (pt: block size)
    truncation: str = "llamafactory"  # sft over cutoff_len: llamafactory (cut prompt and answer) | keep_prompt
    packing: bool = False  # padding-free packing of short samples (sft)
    system: str | None = None  # system prompt for alpaca records without one

    # optimisation (transformers TrainingArguments)
    learning_rate: float = 1.0e-4
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.0  # int steps, or a float < 1 as a ratio of the total
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    eval_steps: int | None = None  # validate every N steps (default: save_steps); needs val_size
    eval_at_end: bool = False  # also validate after the last step when it is not a multiple of eval_steps
    seed: int = 42
    report_to: str = "tensorboard"  # tensorboard | none
    gradient_checkpointing: bool = False
    neftune_alpha: float | None = None  # NEFTune embedding noise, any method
    resume_from_checkpoint: bool | str | None = None  # true: the last checkpoint in output_dir

    # LoRA family (lora, qlora, dora, rslora, loraplus, pissa)
    lora_rank: int = 8
    lora_alpha: int | None = None  # default: 2 * rank
    lora_dropout: float = 0.0
    lora_target: str | list[str] = "all"  # "all" = every linear layer except the LM head
    loraplus_lr_ratio: float = 16.0
    quantization_bit: int | None = None  # qlora: 4 (NF4) or 8

    # freeze
    freeze_trainable_layers: int = 2  # the last N decoder layers
    freeze_trainable_modules: str | list[str] = "all"  # or names such as [mlp, self_attn]

    # galore
    galore_rank: int = 16
    galore_update_interval: int = 200
    galore_scale: float = 0.25
    galore_target: str | list[str] = "all"

    # prefix tuning
    num_virtual_tokens: int = 16

    # bottleneck adapters
    adapter_size: int = 64

    # dpo
    pref_beta: float = 0.1
    pref_loss: str = "sigmoid"

    extra: dict = field(default_factory=dict, repr=False)  # never set by users; keeps asdict() stable

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("extra")
        return data


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check a YAML value against the field's annotation (ints accepted for floats)."""
    hint = typing.get_type_hints(Recipe)[name]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return None
        origin = typing.get_origin(option) or option
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is bool and isinstance(value, bool):
            return value
        if origin is str and isinstance(value, str):
            return value
        if origin is list and isinstance(value, list):
            return value
        if origin is dict and isinstance(value, dict):
            return value
    readable = " or ".join(getattr(o, "__name__", str(o)).replace("NoneType", "null") for o in options)
    raise EvalkitError(f"{source}: {name}={value!r} should be {readable}")


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """``path``: a recipe file; failing that a built-in one (``trainers/lora.yaml``, ``lora``) from the package."""
    path = Path(path)
    if not path.is_file():
        path = builtin_file(path, "trainers") or path
    if not path.is_file():
        raise EvalkitError(f"recipe {path} does not exist; pass a YAML file such as trainers/lora.yaml")
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise EvalkitError(f"{path}: a recipe is a mapping of option: value")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise EvalkitError(f"override {item!r} is not key=value (e.g. max_steps=10)")
        data[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return recipe_from_dict(data, str(path))


def recipe_from_dict(data: dict, source: str = "recipe") -> Recipe:
    known = {f.name for f in dataclasses.fields(Recipe)} - {"extra"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise EvalkitError(f"{source}: unknown option(s) {', '.join(unknown)}; see docs/training.md or evalkit/train/recipe.py")
    values = {k: _coerce(k, v, source) for k, v in data.items()}
    recipe = Recipe(**values)
    if recipe.stage not in STAGES:
        raise EvalkitError(f"{source}: unknown stage {recipe.stage!r}; use one of {', '.join(STAGES)}")
    if recipe.dataset_format not in FORMATS:
        raise EvalkitError(f"{source}: unknown dataset_format {recipe.dataset_format!r}; use one of {', '.join(FORMATS)}")
    if recipe.truncation not in TRUNCATIONS:
        raise EvalkitError(f"{source}: unknown truncation {recipe.truncation!r}; use one of {', '.join(TRUNCATIONS)}")
    if recipe.dataset_range is not None and (len(recipe.dataset_range) != 2 or not all(isinstance(i, int) for i in recipe.dataset_range)):
        raise EvalkitError(f"{source}: dataset_range must be [start, end], e.g. [0, 900]")
    if recipe.quantization_bit not in (None, 4, 8):
        raise EvalkitError(f"{source}: quantization_bit must be 4 or 8")
    if recipe.cutoff_len < 8:
        raise EvalkitError(f"{source}: cutoff_len must be at least 8 tokens")
    for name in AT_LEAST_ONE:
        value = getattr(recipe, name)
        if value is not None and value < 1:
            raise EvalkitError(f"{source}: {name}={value} must be at least 1")
    if recipe.learning_rate <= 0:
        raise EvalkitError(f"{source}: learning_rate={recipe.learning_rate} must be positive")
    if not 0 <= recipe.lora_dropout < 1:
        raise EvalkitError(f"{source}: lora_dropout={recipe.lora_dropout} must be in [0, 1)")
    check_output_dir(recipe.output_dir, source)
    return recipe


# sizes and counts that PEFT/transformers would only reject after the model load (or never)
AT_LEAST_ONE = ("lora_rank", "lora_alpha", "adapter_size", "galore_rank", "galore_update_interval", "num_virtual_tokens",
                "per_device_train_batch_size", "gradient_accumulation_steps", "freeze_trainable_layers",
                "logging_steps", "save_steps", "eval_steps", "max_samples")


def check_output_dir(output_dir: str, source: str) -> None:
    """output_dir must be (or be creatable as) a directory: found now, not after the model load."""
    path = Path(output_dir).expanduser()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise EvalkitError(f"{source}: output_dir={output_dir}: {existing} is a file, not a directory; "
                           "choose another output_dir")
