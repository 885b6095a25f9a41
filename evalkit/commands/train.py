"""``evalkit train trainers/lora.yaml [key=value ...]``: fine-tune and write an evaluable checkpoint."""

from __future__ import annotations

import argparse


RECIPE_OPTIONS = "<recipe options>"  # the epilog, filled in only when help is shown


class _RecipeOptionsFormatter(argparse.RawDescriptionHelpFormatter):
    """Lists the recipe options (generated from the Recipe dataclass) under --help, without importing the
    recipe module on every other command's start."""

    def add_text(self, text):
        if text == RECIPE_OPTIONS:
            from evalkit.train.recipe_help import options_help

            text = options_help()
        super().add_text(text)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="fine-tune a model from a recipe (trainers/*.yaml)", description=__doc__,
                              epilog=RECIPE_OPTIONS, formatter_class=_RecipeOptionsFormatter)
    p.add_argument("recipe", help="recipe YAML, e.g. trainers/lora.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override recipe options, e.g. max_steps=10")
    p.add_argument("--store", default=None, metavar="URL", help="results store (SQLite path or SQLAlchemy URL)")
    p.add_argument("--no-store", action="store_true", help="do not record this training run in the results store")
    p.set_defaults(func=run)


def loss_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def final_line(recipe, manifest: dict) -> str:
    """Mean train loss over the run (not the last batch's) and the last validation loss (with its step)."""
    evals = manifest.get("eval_curve") or []
    validation = (f"last validation loss {loss_text(evals[-1]['eval_loss'])} (step {evals[-1]['step']})" if evals
                  else "no validation")
    return (f"{recipe.method} ({recipe.stage}) on {recipe.model}: {manifest['global_step']} steps, "
            f"mean train loss {loss_text(manifest.get('train_loss'))}, {validation}, "
            f"{manifest['trainable_parameters']:,} trainable parameters")


def run(args) -> int:
    import json

    from evalkit.train.recipe import load_recipe
    from evalkit.profile import format_profile
    from evalkit.profile.training import profiled_train

    recipe = load_recipe(args.recipe, args.overrides)
    output, profile, stored = profiled_train(recipe, args.store, record=not args.no_store)
    manifest = json.loads((output / "train_manifest.json").read_text(encoding="utf-8"))
    print(format_profile(profile))
    print(f"checkpoint: {output}")
    if stored.get("run_id") is not None:
        print(f"store: run {stored['run_id']} in {stored['url']}")
    print(f"evaluate it: evalkit run --model {output} --tasks <tasks>")
    print(f"\n{final_line(recipe, manifest)}")
    return 0
