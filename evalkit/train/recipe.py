"""A training recipe: one YAML file read into a typed dataclass (torchtune style); the built-in
recipes are ``trainers/*.yaml`` (shipped in ``evalkit/resources/trainers``).

``evalkit train trainers/lora.yaml max_steps=10 learning_rate=1e-3`` overrides keys from the
command line; values are parsed as YAML scalars so ``true``, ``5`` and ``[q_proj, v_proj]`` work.
Option names follow LLaMA-Factory where it has one (lora_rank, lora_target, cutoff_len ...).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.resources import builtin_file
from evalkit.train.recipe_checks import FORMATS, STAGES, TRUNCATIONS, check_values, coerce  # noqa: F401 - re-exported
from evalkit.yaml_files import read_yaml, read_yaml_text


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
    # the format's column -> this dataset's key, as LLaMA-Factory's dataset_info "columns" (gsm8k: question/answer)
    dataset_columns: dict[str, str] | None = None
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
    max_steps: int = -1  # -1: train num_train_epochs; otherwise at least 1
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "cosine"  # a transformers SchedulerType: linear, cosine, constant_with_warmup ...
    warmup_steps: float = 0.0  # int steps, or a float < 1 as a ratio of the total
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    eval_steps: int | None = None  # validate every N steps (default: save_steps); needs val_size
    eval_at_end: bool = False  # also validate after the last step when it is not a multiple of eval_steps
    seed: int = 42  # 0 .. 2**32-1
    report_to: str = "tensorboard"  # none, or an installed transformers integration (tensorboard, wandb ...)
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


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """``path``: a recipe file; failing that a built-in one (``trainers/lora.yaml``, ``lora``) from the package."""
    path = Path(path)
    if not path.is_file():
        path = builtin_file(path, "trainers") or path
    if not path.is_file():
        raise EvalkitError(f"recipe {path} does not exist; pass a YAML file such as trainers/lora.yaml")
    data = read_yaml(path, "fix the recipe") or {}
    if not isinstance(data, dict):
        raise EvalkitError(f"{path}: a recipe is a mapping of option: value")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise EvalkitError(f"override {item!r} is not key=value (e.g. max_steps=10)")
        key = key.strip()
        shown = raw[:40].encode("unicode_escape").decode("ascii")  # one line, whatever was typed
        where = f"override {key!r}" if not key.isidentifier() else f"override {key}={shown}{'...' if len(raw) > 40 else ''}"
        data[key] = read_yaml_text(raw, where, "quote it or give a plain value, e.g. max_steps=10") if raw.strip() else None
    return recipe_from_dict(data, str(path))


def option_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Recipe) if f.name != "extra"]


def recipe_from_dict(data: dict, source: str = "recipe") -> Recipe:
    known = option_names()
    unknown = sorted(key if isinstance(key, str) and key.isidentifier() else repr(key) for key in data if key not in known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise EvalkitError(f"{source}: unknown option(s) {', '.join(unknown)}{hint}; known options: {', '.join(known)}")
    hints = typing.get_type_hints(Recipe)
    recipe = Recipe(**{k: coerce(hints, k, v, source) for k, v in data.items()})
    check_values(recipe, source)
    check_output_dir(recipe.output_dir, source)
    return recipe


def check_output_dir(output_dir: str, source: str) -> None:
    """output_dir must be (or be creatable as) a directory: found now, not after the model load."""
    path = Path(output_dir).expanduser()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise EvalkitError(f"{source}: output_dir={output_dir}: {existing} is a file, not a directory; "
                           "choose another output_dir")
