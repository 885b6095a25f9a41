"""``evalkit export --merge CHECKPOINT --output DIR``: fold a LoRA-family adapter into full weights.

The merged directory is a plain transformers checkpoint (safetensors + tokenizer) that any
runtime loads without PEFT; its ``train_manifest.json`` is copied with an ``export`` record.
"""

from __future__ import annotations

import json
from pathlib import Path

from evalkit.errors import EvalkitError

MERGEABLE = ("LORA",)  # PEFT types whose weights fold into the base linear layers


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="write merged full weights from a trained adapter", description=__doc__)
    p.add_argument("checkpoint", help="adapter directory written by evalkit train (or any PEFT LoRA adapter)")
    p.add_argument("--merge", action="store_true", required=True, help="merge the adapter into the base weights")
    p.add_argument("--output", required=True, help="new directory for the merged model (must not exist)")
    p.set_defaults(func=run)


def run(args) -> int:
    source, output = Path(args.checkpoint), Path(args.output)
    if output.exists() and any(output.iterdir()):
        raise EvalkitError(f"{output} already exists and is not empty; choose a new --output directory")
    config_path = source / "adapter_config.json"
    if not config_path.is_file():
        if (source / "evalkit_adapter_config.json").is_file():
            raise EvalkitError(f"{source}: bottleneck adapters add layers and cannot be merged; evaluate the adapter directory itself")
        if (source / "config.json").is_file():
            raise EvalkitError(f"{source}: already full weights (method full/freeze/galore); nothing to merge")
        raise EvalkitError(f"{source}: no adapter_config.json; pass an adapter directory written by evalkit train")
    peft_type = json.loads(config_path.read_text(encoding="utf-8")).get("peft_type")
    if peft_type not in MERGEABLE:
        raise EvalkitError(f"{source}: a {peft_type} adapter cannot be merged into the weights (only LoRA-family adapters can)")

    from evalkit.models.loader import load_model

    loaded = load_model(str(source), device="cpu", dtype="float32")
    merged = loaded.model.merge_and_unload()
    staging = output.with_name(output.name + ".partial")
    merged.save_pretrained(str(staging))
    loaded.tokenizer.save_pretrained(str(staging))
    manifest_path = source / "train_manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    manifest["export"] = {"merged_from": str(source.resolve()), "adapter": loaded.identity}
    (staging / "train_manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    if output.exists():
        output.rmdir()  # empty directory checked above
    staging.rename(output)  # a killed export never leaves a half-written model under the final name
    print(f"merged {source} into {output}")
    return 0
