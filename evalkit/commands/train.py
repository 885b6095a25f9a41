"""``evalkit train trainers/lora.yaml [key=value ...]``: fine-tune and write an evaluable checkpoint."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="fine-tune a model from a recipe (trainers/*.yaml)", description=__doc__)
    p.add_argument("recipe", help="recipe YAML, e.g. trainers/lora.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override recipe options, e.g. max_steps=10")
    p.add_argument("--store", default=None, metavar="URL", help="results store (SQLite path or SQLAlchemy URL)")
    p.add_argument("--no-store", action="store_true", help="do not record this training run in the results store")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from evalkit.train.recipe import load_recipe
    from evalkit.profile import format_profile
    from evalkit.profile.training import profiled_train

    recipe = load_recipe(args.recipe, args.overrides)
    output, profile, stored = profiled_train(recipe, args.store, record=not args.no_store)
    manifest = json.loads((output / "train_manifest.json").read_text(encoding="utf-8"))
    loss = manifest["final_loss"]
    print(f"\n{recipe.method} ({recipe.stage}) on {recipe.model}: {manifest['global_step']} steps, "
          f"final loss {'-' if loss is None else f'{loss:.4f}'}, {manifest['trainable_parameters']:,} trainable parameters")
    print(format_profile(profile))
    print(f"checkpoint: {output}")
    if stored.get("run_id") is not None:
        print(f"store: run {stored['run_id']} in {stored['url']}")
    print(f"evaluate it: evalkit run --model {output} --tasks <tasks>")
    return 0
