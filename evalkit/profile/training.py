"""Training throughput for the profiler: a Trainer callback that counts the tokens the model is
trained on (non-padding tokens of every training forward pass) and the time spent training."""

from __future__ import annotations

import time

from transformers import TrainerCallback


class TrainingThroughput(TrainerCallback):
    """Adds ``train`` tokens/s to ``profiler``; evaluation passes (model.eval()) are not counted."""

    def __init__(self, profiler) -> None:
        self.profiler = profiler
        self.tokens = 0
        self._hook = None
        self._started = None

    def _count(self, module, args, kwargs) -> None:
        if not module.training:
            return
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if mask is not None:
            self.tokens += int(mask.sum())
        elif ids is not None:  # packed (padding-free) batches carry no mask: every token is real
            self.tokens += ids.numel()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and self._hook is None:
            self._hook = model.register_forward_pre_hook(self._count, with_kwargs=True)
        self._started = time.perf_counter()
        return control

    def on_train_end(self, args, state, control, **kwargs):
        seconds = time.perf_counter() - self._started
        self.profiler.phases["train"] = self.profiler.phases.get("train", 0.0) + seconds
        self.profiler.add_tokens("train", self.tokens, seconds)
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        return control


PROFILE_FILE = "train_profile.json"


def profiled_train(recipe, store: str | None = None, record: bool = True) -> tuple:
    """``evalkit train`` under the profiler: train, write ``train_profile.json`` beside the
    manifest, record the run in the results store. Returns (checkpoint dir, profile, store info)."""
    import json
    import sys

    from evalkit.profile.profiler import Profiler
    from evalkit.train.runner import train

    with Profiler() as prof:
        with prof.phase("total"):
            output = train(recipe, callbacks=[TrainingThroughput(prof)])
    profile = prof.result()
    from evalkit.distributed import world

    if world()[0] != 0:  # under accelerate launch / torchrun the checkpoint and its records are rank 0's
        return output, profile, {}
    (output / PROFILE_FILE).write_text(json.dumps(profile, indent=2), encoding="utf-8")
    stored = {}
    if record:
        from evalkit.store import normalise_url, record_training

        manifest = json.loads((output / "train_manifest.json").read_text(encoding="utf-8"))
        try:
            url = normalise_url(store)
            stored = {"url": url, "run_id": record_training(output, manifest, profile, url)}
        except Exception as exc:  # noqa: BLE001 - the checkpoint is saved; a store problem must not lose it
            print(f"evalkit: warning: could not record the training run in the results store "
                  f"({type(exc).__name__}: {exc}); load it later with: evalkit import {output}", file=sys.stderr)
    return output, profile, stored
