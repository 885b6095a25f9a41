"""``evalkit train``: fine-tune a model from a recipe and write a checkpoint evalkit can evaluate."""
