"""Run one recipe: base model -> method -> transformers Trainer (sft, pt) or TRL DPOTrainer (dpo) -> checkpoint."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.train import checkpoint
from evalkit.train.callbacks import EvaluationSchedule, ManifestCallback, RunSummary, TrainerLog
from evalkit.train.data import load_training_data
from evalkit.train.methods import get_method
from evalkit.train.recipe import Recipe


def resolve_base(spec: str) -> tuple[str, dict]:
    """The local directory (or hub id) the base weights load from, and its identity record."""
    from evalkit.models.source import resolve_model

    path = Path(spec).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():  # an adapter, or no model at all
        raise EvalkitError(f"{path}: not a transformers checkpoint (no config.json); train from full weights "
                           "(merge an adapter first with evalkit export --merge)")
    source = resolve_model(spec)
    if source.base is not None:  # a directory with both config.json and an adapter config
        raise EvalkitError(f"{path}: an adapter, not full weights; train from full weights "
                           "(merge it first with evalkit export --merge)")
    weights = str(source.weights_dir)  # first: a GGUF's hash then comes with its dequantised copy
    identity = source.identity()
    if source.kind == "hub":
        del identity["revision"]  # unknown before the load; train manifests never carried it
    return weights, identity


def load_base(base_path: str, method, recipe: Recipe):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = method.load_kwargs(recipe)
    if "quantization_config" in kwargs:
        kwargs["device_map"] = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        config = AutoConfig.from_pretrained(base_path)
        quantization = getattr(config, "quantization_config", None)
        if isinstance(quantization, dict) and quantization.get("quant_method") == "gguf":
            # A dequantised GGUF cache (embedded models) holds plain fp32 weights; the leftover
            # "gguf" marker would make the Trainer refuse to train them.
            del config.quantization_config
        model = AutoModelForCausalLM.from_pretrained(base_path, config=config, dtype=torch.float32, **kwargs)
    except Exception as exc:
        raise EvalkitError(f"{base_path}: cannot load the base model ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    model.config.use_cache = False  # no KV cache while training
    return model


TARGET_OPTIONS = {"freeze": ("freeze_trainable_modules", False), "galore": ("galore_target", True)}
LORA_FAMILY = ("lora", "qlora", "dora", "rslora", "loraplus", "pissa")


def check_module_names(base_path: str, recipe: Recipe) -> None:
    """Check the recipe's module names on an empty (meta-device) copy of the model: a typo fails in a
    second, before gigabytes of weights load."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from evalkit.train.methods import check_targets

    option, linear_only = ("lora_target", True) if recipe.method in LORA_FAMILY else TARGET_OPTIONS.get(recipe.method, (None, True))
    if option is None or getattr(recipe, option) == "all":
        return
    try:
        config = AutoConfig.from_pretrained(base_path)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
    except Exception:  # noqa: BLE001 - unusual configs: the same check runs again on the loaded model
        return
    check_targets(skeleton, getattr(recipe, option), option, linear_only=linear_only)


def load_tokenizer(base_path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise EvalkitError(f"{base_path}: the tokenizer has no chat template; sft and dpo format prompts with it")
    return tokenizer


def training_arguments(recipe: Recipe, method, has_validation: bool, dpo: bool):
    import torch

    common = dict(
        output_dir=recipe.output_dir,
        per_device_train_batch_size=recipe.per_device_train_batch_size,
        per_device_eval_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        learning_rate=recipe.learning_rate,
        num_train_epochs=recipe.num_train_epochs,
        max_steps=recipe.max_steps,
        lr_scheduler_type=recipe.lr_scheduler_type,
        warmup_steps=recipe.warmup_steps,
        weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm,
        logging_steps=recipe.logging_steps,
        save_strategy="steps",
        save_steps=recipe.save_steps,
        save_total_limit=recipe.save_total_limit,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=recipe.eval_steps or recipe.save_steps,
        seed=recipe.seed,
        data_seed=recipe.seed,
        report_to=[] if recipe.report_to == "none" else [recipe.report_to],
        activation_checkpointing=recipe.gradient_checkpointing,
        neftune_noise_alpha=recipe.neftune_alpha,
        remove_unused_columns=False,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        **method.training_args(recipe),
    )
    if dpo:
        from trl import DPOConfig

        return DPOConfig(**common, beta=recipe.pref_beta, loss_type=[recipe.pref_loss], max_length=recipe.cutoff_len)
    from transformers import TrainingArguments

    return TrainingArguments(**common)


def quiet_third_party() -> None:
    """Silence stderr lines that tell the user nothing they can act on, by their exact source and text:
    bitsandbytes' notice about its optional `kernels` package; transformers' warning that its own Trainer
    calls a deprecated method, on every run."""
    from evalkit.models.loader import quiet_bitsandbytes, silence_deprecations

    quiet_bitsandbytes()
    silence_deprecations()


def capped_warmup(recipe: Recipe) -> Recipe:
    """A warm-up of max_steps or more would end training before the learning rate reaches its set value
    (LR 0 at step 1 and rising throughout): cap it at 10% of max_steps and say so."""
    warmup, steps = recipe.warmup_steps, recipe.max_steps
    if steps is None or steps <= 0 or warmup < 1 or warmup < steps:
        return recipe
    capped = steps // 10
    print(f"evalkit: note: warmup_steps={warmup:g} is not below max_steps={steps}: the learning rate would still be "
          f"rising when training stops; warm-up capped to {capped} step(s) (10% of max_steps)", file=sys.stderr)
    return dataclasses.replace(recipe, warmup_steps=capped)


def train(recipe: Recipe, callbacks=()) -> Path:
    """Train and save; returns the checkpoint directory (output_dir). ``callbacks``: extra TrainerCallbacks (the profiler's)."""
    quiet_third_party()
    recipe = capped_warmup(recipe)
    method = get_method(recipe.method)
    output = Path(recipe.output_dir)
    resume = recipe.resume_from_checkpoint
    checkpoint.check_output_dir(output, resuming=bool(resume))
    resume_path = _resume_path(output, resume)
    if method.name == "qlora" or recipe.quantization_bit:
        from evalkit.train.methods.lora import require_bitsandbytes

        if method.name != "qlora":
            raise EvalkitError(f"quantization_bit is for method qlora, not {method.name}")
        require_bitsandbytes(recipe)

    base_path, base_identity = resolve_base(recipe.model)
    tokenizer = load_tokenizer(base_path)
    data = load_training_data(recipe, tokenizer)  # fails on bad data before the model loads
    check_module_names(base_path, recipe)  # and on a wrong module name
    model = load_base(base_path, method, recipe)
    from transformers import set_seed

    set_seed(recipe.seed)  # adapter initialisation (LoRA A, prefixes, bottlenecks) is part of the run: same recipe, same run
    model = method.prepare(model, recipe)
    if method.name == "pissa":
        _save_pissa_init(model, output)
    trainable = checkpoint.trainable_parameters(model)
    if trainable[0] == 0:
        raise EvalkitError(f"method {method.name}: nothing to train (0 trainable parameters); check the recipe")

    trainer = _trainer(recipe, method, model, tokenizer, data, base_path)
    trainer.add_callback(ManifestCallback(recipe, data.info, base_path, base_identity, trainable))
    trainer.add_callback(EvaluationSchedule(recipe.eval_at_end))
    trainer.add_callback(TrainerLog())
    trainer.callback_handler.callbacks.insert(0, RunSummary(recipe, data.info, trainable))  # before the progress bar
    for callback in callbacks:
        trainer.add_callback(callback)
    result = trainer.train(resume_from_checkpoint=resume_path)
    if not trainer.is_world_process_zero():  # under accelerate launch rank 0 writes the final checkpoint
        trainer.accelerator.wait_for_everyone()
        return output

    checkpoint.save_final(trainer.model, tokenizer, method, output, base_path, recipe)
    checkpoint.name_base_in_adapter(output, base_path, base_identity)
    if method.name == "pissa":
        shutil.rmtree(output / "pissa_init", ignore_errors=True)
    manifest = checkpoint.build_manifest(recipe, data.info, base_path, base_identity, trainer.state, trainable)
    manifest["resumed_from"] = resume_path
    manifest["train_loss"] = result.training_loss  # the mean over this run's steps (final_loss: the last logged)
    checkpoint.write_manifest(output, manifest)
    trainer.accelerator.wait_for_everyone()  # the other ranks read it after this
    return output


def _resume_path(output: Path, resume) -> str | None:
    if not resume:
        return None
    if resume is True:
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(output)) if output.is_dir() else None
        if last is None:
            raise EvalkitError(f"resume_from_checkpoint=true but {output} has no checkpoint-N directory to resume from")
        return last
    if not Path(resume).is_dir():
        raise EvalkitError(f"resume_from_checkpoint={resume}: no such checkpoint directory")
    return str(resume)


def _save_pissa_init(model, output: Path) -> None:
    """PiSSA's initial adapter, needed at the end to convert the trained one back to the original base."""
    initial = output / "pissa_init"
    if (initial / "adapter_config.json").is_file():
        return  # resumed run: the exact SVD gives the same init, keep the first one
    config = model.peft_config["default"]
    saved, config.init_lora_weights = config.init_lora_weights, True
    model.save_pretrained(str(initial))
    config.init_lora_weights = saved


def _trainer(recipe: Recipe, method, model, tokenizer, data, base_path: str):
    from datasets import Dataset

    optimizers = (method.optimizer(model, recipe), None) if method.optimizer else (None, None)
    train_set = Dataset.from_list(data.train)
    eval_set = Dataset.from_list(data.validation) if data.validation else None
    args = training_arguments(recipe, method, eval_set is not None, dpo=recipe.stage == "dpo")
    if recipe.stage == "dpo":
        from trl import DPOTrainer

        # An explicit frozen reference (the untouched base) so TRL never copies the adapter into a second one.
        ref_model = load_base(base_path, get_method("full") if method.name != "qlora" else method, recipe)
        return DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                          processing_class=tokenizer, optimizers=optimizers)
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, Trainer

    if recipe.packing:
        # Padding-free packing: a batch becomes one row with restarting position_ids; transformers
        # builds a block-diagonal mask from them, so packed samples never attend to each other.
        collator = DataCollatorWithFlattening()
    else:
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    return Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set, data_collator=collator,
                   processing_class=tokenizer, optimizers=optimizers)
