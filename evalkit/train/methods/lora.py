"""The LoRA family through PEFT: lora, dora, rslora, pissa, loraplus and qlora (4-bit NF4 / 8-bit base)."""

from __future__ import annotations

import importlib

from evalkit.errors import EvalkitError
from evalkit.train.methods.base import Method, check_targets


def lora_config(model, recipe, **extra):
    from peft import LoraConfig, TaskType

    targets = check_targets(model, recipe.lora_target, "lora_target")
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=recipe.lora_rank,
        lora_alpha=recipe.lora_alpha or 2 * recipe.lora_rank,
        lora_dropout=recipe.lora_dropout,
        target_modules="all-linear" if targets == "all" else targets,
        **extra,
    )


def wrap(model, recipe, **extra):
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, recipe, **extra))


def prepare_lora(model, recipe):
    return wrap(model, recipe)


def prepare_dora(model, recipe):
    return wrap(model, recipe, use_dora=True)


def prepare_rslora(model, recipe):
    return wrap(model, recipe, use_rslora=True)


def prepare_pissa(model, recipe):
    # Exact SVD ("pissa", not "pissa_niter_K"): the residual base must come out identical when a
    # resumed run re-initialises the model, or the checkpoint's adapter would not fit it.
    return wrap(model, recipe, init_lora_weights="pissa")


def loraplus_optimizer(model, recipe):
    """LoRA+: B matrices learn ``loraplus_lr_ratio`` times faster than A (PEFT's implementation)."""
    import torch
    from peft.optimizers import create_loraplus_optimizer

    return create_loraplus_optimizer(model, optimizer_cls=torch.optim.AdamW, lr=recipe.learning_rate,
                                     loraplus_lr_ratio=recipe.loraplus_lr_ratio, weight_decay=recipe.weight_decay)


def require_bitsandbytes(recipe) -> None:
    try:
        importlib.import_module("bitsandbytes")
    except ImportError:
        raise EvalkitError(f"method qlora ({recipe.quantization_bit or 4}-bit) needs bitsandbytes: "
                           "pip install 'bitsandbytes>=0.50' (it has a CPU backend)") from None


def qlora_load_kwargs(recipe) -> dict:
    import torch
    from transformers import BitsAndBytesConfig

    require_bitsandbytes(recipe)
    bits = recipe.quantization_bit or 4
    if bits == 4:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=torch.float32)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    return {"quantization_config": config}


def prepare_qlora(model, recipe):
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=recipe.gradient_checkpointing)
    return wrap(model, recipe)


METHODS = [
    Method("lora", prepare_lora, saves="peft", description="LoRA"),
    Method("qlora", prepare_qlora, saves="peft", load_kwargs=qlora_load_kwargs, description="LoRA on a 4-bit NF4 / 8-bit base"),
    Method("dora", prepare_dora, saves="peft", description="weight-decomposed LoRA"),
    Method("rslora", prepare_rslora, saves="peft", description="rank-stabilised LoRA (alpha/sqrt(r))"),
    Method("loraplus", prepare_lora, saves="peft", optimizer=loraplus_optimizer, description="LoRA+ (lr ratio for B)"),
    Method("pissa", prepare_pissa, saves="peft", description="LoRA initialised from principal singular vectors"),
]
