"""Prefix tuning through PEFT: trained key/value prefixes for every layer."""

from __future__ import annotations

from evalkit.train.methods.base import Method


def prepare_prefix(model, recipe):
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    config = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=recipe.num_virtual_tokens)
    return get_peft_model(model, config)


METHODS = [Method("prefix", prepare_prefix, saves="peft", description="prefix tuning")]
