"""Writing checkpoints: the final model (PEFT adapter, full weights or evalkit adapter) plus
``train_manifest.json`` saying what produced it."""

from __future__ import annotations

import json
import platform
from pathlib import Path

from evalkit.cache import sha256_text
from evalkit.errors import EvalkitError

MANIFEST = "train_manifest.json"


def versions() -> dict:
    import importlib.metadata as md

    found = {}
    for name in ("evalkit", "torch", "transformers", "peft", "trl", "datasets", "bitsandbytes", "galore-torch"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    found["python"] = platform.python_version()
    return found


def check_output_dir(directory: Path, resuming: bool) -> None:
    """Never overwrite a finished checkpoint; a half-finished run must be resumed explicitly."""
    if resuming or not directory.exists() or not any(directory.iterdir()):
        return
    if (directory / MANIFEST).is_file():
        raise EvalkitError(f"{directory} already holds a finished checkpoint; choose another output_dir=...")
    raise EvalkitError(f"{directory} is not empty (an interrupted run?); resume it with resume_from_checkpoint=true "
                       "or choose another output_dir=...")


def trainable_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def losses(log_history: list[dict]) -> tuple[float | None, float | None]:
    train = [e["loss"] for e in log_history if "loss" in e]
    evals = [e["eval_loss"] for e in log_history if "eval_loss" in e]
    return (train[-1] if train else None), (evals[-1] if evals else None)


def base_name(base_path: str, base_identity: dict) -> str:
    """What a checkpoint names as its base: an embedded model by its hub id (portable: the cache directory it
    loaded from exists on this machine only; evalkit maps the id back offline), anything else by its path."""
    from evalkit.models.source import embedded_hub_id

    if base_identity.get("kind") == "embedded":
        return embedded_hub_id(base_identity.get("alias", "")) or base_path
    return base_path


def name_base_in_adapter(directory: Path, base_path: str, base_identity: dict) -> None:
    """Point a saved adapter's config and PEFT's model card (the Trainer's checkpoint-N saves too) at ``base_name``."""
    name = base_name(base_path, base_identity)
    if name == base_path:
        return
    for config_name in ("adapter_config.json", "evalkit_adapter_config.json"):
        file = directory / config_name
        if file.is_file():
            config = json.loads(file.read_text(encoding="utf-8"))
            config["base_model_name_or_path"] = name
            file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    card = directory / "README.md"
    if card.is_file():
        card.write_text(card.read_text(encoding="utf-8").replace(base_path, name), encoding="utf-8")


def build_manifest(recipe, data_info: dict, base_path: str, base_identity: dict, state, trainable: tuple[int, int]) -> dict:
    recipe_dict = recipe.to_dict()
    final_loss, final_eval = losses(state.log_history)
    # the base by what it is; a local directory also by its path (an embedded model's is a cache path)
    where = {"hub_id": base_name(base_path, base_identity)} if base_identity.get("kind") == "embedded" else {"path": base_path}
    return {
        "format": "evalkit-train-manifest/1",
        "method": recipe.method,
        "stage": recipe.stage,
        "recipe": recipe_dict,
        "recipe_sha256": sha256_text(json.dumps(recipe_dict, sort_keys=True)),
        "data": data_info,
        "base_model": {**base_identity, "spec": recipe.model, **where},
        "global_step": state.global_step,
        "epoch": state.epoch,
        "final_loss": final_loss,
        "final_eval_loss": final_eval,
        "loss_curve": [{"step": e["step"], "loss": e["loss"]} for e in state.log_history if "loss" in e],
        "eval_curve": [{"step": e["step"], "eval_loss": e["eval_loss"]} for e in state.log_history if "eval_loss" in e],
        "trainable_parameters": trainable[0],
        "total_parameters": trainable[1],
        "versions": versions(),
    }


def write_manifest(directory: Path, manifest: dict) -> None:
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")


def save_final(model, tokenizer, method, directory: Path, base_path: str, recipe) -> None:
    """Save what ``evalkit run --model <directory>`` loads (tokenizer included). Saved naming the local
    ``base_path`` (PEFT would otherwise look the base up on the hub); ``name_base_in_adapter`` renames it."""
    from evalkit.train.methods import adapter

    directory.mkdir(parents=True, exist_ok=True)
    if method.saves == "peft":
        model.peft_config["default"].base_model_name_or_path = base_path
        if recipe.method == "pissa":
            _save_pissa(model, directory)
        else:
            model.save_pretrained(str(directory))
    elif method.saves == "evalkit_adapter":
        adapter.save(model, directory, base_path, recipe.adapter_size)
    else:
        model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))


def _save_pissa(model, directory: Path) -> None:
    """PiSSA trains on a residual base; convert the adapter to plain LoRA (rank 2r) on the original base."""
    initial = directory / "pissa_init"
    if not (initial / "adapter_config.json").is_file():
        raise EvalkitError(f"{initial}: the PiSSA initial adapter is missing; cannot convert the trained adapter")
    model.save_pretrained(str(directory), path_initial_model_for_weight_conversion=str(initial))
