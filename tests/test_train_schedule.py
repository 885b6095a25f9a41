"""Validation runs only when the recipe asks for it: at multiples of ``eval_steps``, and after the last
step only with ``eval_at_end: true`` (transformers alone would add an unasked end-of-run pass)."""

from __future__ import annotations

from tests.test_train_methods import train

# 6 records, 2 held out for validation, batch 2: 2 steps finish well before eval_steps=30.
SHORT_RUN = dict(max_samples=6, val_size=2, per_device_train_batch_size=2, max_steps=2, eval_steps=30)


def test_no_validation_pass_when_eval_steps_is_beyond_max_steps(tiny_model_dir, tmp_path, one_thread):
    _, manifest = train(tmp_path, tiny_model_dir, **SHORT_RUN)
    assert manifest["global_step"] == 2
    assert manifest["eval_curve"] == [] and manifest["final_eval_loss"] is None
    assert manifest["data"]["validation_samples"] == 2  # the split exists; it just was not evaluated


def test_end_of_training_validation_when_the_recipe_asks(tiny_model_dir, tmp_path, one_thread):
    _, manifest = train(tmp_path, tiny_model_dir, **SHORT_RUN, eval_at_end=True)
    assert [e["step"] for e in manifest["eval_curve"]] == [2]
    assert manifest["final_eval_loss"] > 0


def test_validation_at_multiples_of_eval_steps_only(tiny_model_dir, tmp_path, one_thread):
    _, manifest = train(tmp_path, tiny_model_dir, **{**SHORT_RUN, "max_steps": 3, "eval_steps": 2})
    assert [e["step"] for e in manifest["eval_curve"]] == [2]  # not again after step 3
