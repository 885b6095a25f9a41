"""Value checks for a training recipe, run before anything loads: a value transformers, PEFT or numpy would
reject only after the model load (a NaN learning rate, an unknown scheduler, a seed numpy cannot take) or
would silently accept (zero training steps, a negative validation split) is one line naming the option,
the value and the fix."""

from __future__ import annotations

import math
import re
import types
import typing
from typing import Any

from evalkit.errors import EvalkitError

STAGES = ("sft", "pt", "dpo")
FORMATS = ("auto", "alpaca", "sharegpt", "text", "pairwise")
TRUNCATIONS = ("llamafactory", "keep_prompt")  # see evalkit.train.data.truncate_turns

# A path or prompt longer than PATH_MAX is a mistake (a pasted file?), never a value anyone meant.
MAX_TEXT = 4096
MAX_SEED = 2**32 - 1  # numpy's RandomState (seeded by transformers.set_seed) takes 0 .. 2**32-1
MAX_INT = 2**63 - 1  # what torch and the Trainer's step counters hold

# sizes and counts that PEFT/transformers would only reject after the model load (or never)
AT_LEAST_ONE = ("lora_rank", "lora_alpha", "adapter_size", "galore_rank", "galore_update_interval", "num_virtual_tokens",
                "per_device_train_batch_size", "gradient_accumulation_steps", "freeze_trainable_layers",
                "logging_steps", "save_steps", "eval_steps", "max_samples", "save_total_limit")
NOT_NEGATIVE = ("num_train_epochs", "warmup_steps", "weight_decay", "max_grad_norm", "val_size")
POSITIVE = ("learning_rate", "neftune_alpha", "loraplus_lr_ratio", "galore_scale", "pref_beta")


_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def coerce(hints: dict, name: str, value: Any, source: str) -> Any:
    """Check a YAML value against the field's annotation (ints accepted for floats)."""
    hint = hints[name]
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    options = typing.get_args(hint) if union else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return None
        origin = typing.get_origin(option) or option
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return _finite(name, value, source)
        if origin is float and isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
            return _finite(name, float(value), source)  # YAML 1.1 reads 1e-4 (no dot) as a string; 1.2 and users don't
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT and name != "seed":  # the seed has its own, narrower range (check_values)
                raise EvalkitError(f"{source}: {name}={_short(value)} is out of range; use a number below 2**63")
            return value
        if origin is bool and isinstance(value, bool):
            return value
        if origin is str and isinstance(value, str):
            return _text(name, value, source)
        if origin is list and isinstance(value, list):
            return _items(name, value, typing.get_args(option), source)
        if origin is dict and isinstance(value, dict):
            return value
    readable = " or ".join(getattr(o, "__name__", str(o)).replace("NoneType", "null") for o in options)
    raise EvalkitError(f"{source}: {name}={_short(value)} should be {readable}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _finite(name: str, value: int | float, source: str) -> float:
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise EvalkitError(f"{source}: {name}={_short(value)} is not a finite number; give a number such as 1e-4")
    return number


def _text(name: str, value: str, source: str) -> str:
    if len(value) > MAX_TEXT:
        raise EvalkitError(f"{source}: {name} is {len(value)} characters long, more than {MAX_TEXT}; "
                           "give a shorter value (a path, not a file's contents)")
    return value


def _items(name: str, value: list, item_types: tuple, source: str) -> list:
    wanted = item_types[0] if item_types else None
    for item in value:
        if wanted is str and isinstance(item, str):
            _text(name, item, source)
        elif wanted is int and isinstance(item, int) and not isinstance(item, bool):
            continue
        elif wanted is not None:
            raise EvalkitError(f"{source}: {name}: item {_short(item)} should be {wanted.__name__}")
    return value


def check_values(recipe, source: str) -> None:
    """Ranges and choices of a coerced recipe (``recipe``: an evalkit.train.recipe.Recipe)."""
    _choice(source, "stage", recipe.stage, STAGES)
    _choice(source, "dataset_format", recipe.dataset_format, FORMATS)
    _choice(source, "truncation", recipe.truncation, TRUNCATIONS)
    if recipe.dataset_columns is not None:
        targets = ("instruction", "input", "output", "system", "history", "conversations", "messages", "text",
                   "chosen", "rejected")
        for target, key in recipe.dataset_columns.items():
            if target not in targets or not isinstance(key, str) or not key or len(key) > 200:
                raise EvalkitError(f"{source}: dataset_columns maps a format's column to this dataset's key, e.g. "
                                   f"{{instruction: question, output: answer}}; columns: {', '.join(targets)}")
    if recipe.dataset_range is not None:
        if len(recipe.dataset_range) != 2 or not 0 <= recipe.dataset_range[0] < recipe.dataset_range[1]:
            raise EvalkitError(f"{source}: dataset_range must be [start, end] with 0 <= start < end, e.g. [0, 900]")
    if recipe.quantization_bit not in (None, 4, 8):
        raise EvalkitError(f"{source}: quantization_bit must be 4 or 8")
    if recipe.cutoff_len < 8:
        raise EvalkitError(f"{source}: cutoff_len must be at least 8 tokens")
    for name in AT_LEAST_ONE:
        value = getattr(recipe, name)
        if value is not None and value < 1:
            raise EvalkitError(f"{source}: {name}={value} must be at least 1")
    for name in NOT_NEGATIVE:
        if getattr(recipe, name) < 0:
            raise EvalkitError(f"{source}: {name}={getattr(recipe, name):g} must not be negative")
    for name in POSITIVE:
        value = getattr(recipe, name)
        if value is not None and value <= 0:
            raise EvalkitError(f"{source}: {name}={value:g} must be positive")
    if not 0 <= recipe.lora_dropout < 1:
        raise EvalkitError(f"{source}: lora_dropout={recipe.lora_dropout} must be in [0, 1)")
    for name in ("val_size", "warmup_steps"):  # below 1 a fraction, from 1 a count
        value = getattr(recipe, name)
        if value >= 1 and not value.is_integer():
            raise EvalkitError(f"{source}: {name}={value:g} must be a fraction below 1 or a whole count")
    if not 0 <= recipe.seed <= MAX_SEED:
        raise EvalkitError(f"{source}: seed={_short(recipe.seed)} must be in 0..{MAX_SEED} (2**32-1)")
    _check_steps(recipe, source)
    _check_transformers_choices(recipe, source)


def _choice(source: str, name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise EvalkitError(f"{source}: unknown {name} {_short(value)}; use one of {', '.join(allowed)}")


def _check_steps(recipe, source: str) -> None:
    if recipe.max_steps == -1:
        if recipe.num_train_epochs <= 0:
            raise EvalkitError(f"{source}: num_train_epochs={recipe.num_train_epochs:g} with max_steps=-1 trains "
                               "nothing; set num_train_epochs > 0 or max_steps >= 1")
    elif recipe.max_steps < 1:
        raise EvalkitError(f"{source}: max_steps={recipe.max_steps} must be -1 (train num_train_epochs) or at least 1")


def report_integrations() -> list[str]:
    """The ``report_to`` values this install can use: "none" and the transformers integrations installed."""
    from evalkit.models.loader import quiet_bitsandbytes

    quiet_bitsandbytes()  # transformers.integrations imports bitsandbytes
    from transformers.integrations.integration_utils import get_available_reporting_integrations

    return ["none", *get_available_reporting_integrations()]


def _check_transformers_choices(recipe, source: str) -> None:
    from evalkit.models.loader import quiet_bitsandbytes

    quiet_bitsandbytes()
    from transformers.trainer_utils import SchedulerType

    _choice(source, "lr_scheduler_type", recipe.lr_scheduler_type, [s.value for s in SchedulerType])
    available = report_integrations()
    if recipe.report_to not in available:
        from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

        hint = f" (its package is not installed)" if recipe.report_to in INTEGRATION_TO_CALLBACK else ""
        raise EvalkitError(f"{source}: report_to={_short(recipe.report_to)} is not available{hint}; "
                           f"use one of {', '.join(available)}")
