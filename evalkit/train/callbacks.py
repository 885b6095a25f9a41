"""Trainer callbacks of ``evalkit train``: the summary printed before the first step, the validation
schedule, and the manifest written into every checkpoint-N directory."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from evalkit.train import checkpoint


def eval_every(recipe) -> int:
    """The validation interval the Trainer is given (eval_steps defaults to save_steps)."""
    return recipe.eval_steps or recipe.save_steps


class RunSummary(TrainerCallback):
    """One block on stdout before the first step: what is trained, on how much data, for how many steps, where to."""

    def __init__(self, recipe, data_info: dict, trainable: tuple[int, int]):
        self.recipe, self.data_info, self.trainable = recipe, data_info, trainable

    def on_train_begin(self, args, state, control, **kwargs):
        # Registered ahead of the progress bar's callback: state.max_steps is known, the bar not yet drawn.
        if state.is_world_process_zero:
            print(summary_text(self.recipe, self.data_info, self.trainable, args, state.max_steps), flush=True)
            notice = validation_notice(self.recipe, self.data_info["validation_samples"], state.max_steps)
            if notice:
                print(notice, file=sys.stderr, flush=True)
        return control


def summary_text(recipe, data_info: dict, trainable: tuple[int, int], args, total_steps: int) -> str:
    share = 100 * trainable[0] / trainable[1] if trainable[1] else 0.0
    effective = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    if recipe.max_steps > 0:
        steps = f"{total_steps} (max_steps)"
    else:
        steps = f"{total_steps} ({recipe.num_train_epochs:g} epoch(s) of {data_info['train_samples']:,} records)"
    validation = data_info["validation_samples"]
    rows = [
        ("method", f"{recipe.method} ({recipe.stage}) on {recipe.model}"),
        ("parameters", f"{trainable[0]:,} trainable of {trainable[1]:,} ({share:.2f}%)"),
        ("data", f"{data_info['train_samples']:,} train / {validation:,} validation records"),
        ("batch", f"{effective} per step ({args.per_device_train_batch_size} per device x "
                  f"{args.gradient_accumulation_steps} accumulation x {args.world_size} process(es))"),
        ("steps", steps + (f", validation every {eval_every(recipe)}" if validation else "")),
        ("output", str(Path(recipe.output_dir).resolve())),
    ]
    return "evalkit train\n" + "\n".join(f"  {name:<12}{value}" for name, value in rows)


class EvaluationSchedule(TrainerCallback):
    """Validate only at multiples of eval_steps. transformers (>= 4.5x) also validates after the last step
    whenever a step-based schedule is set: a 10-step run with eval_steps 30 paid a full validation pass
    nobody asked for. That end-of-run pass happens here only with ``eval_at_end: true`` (a run whose
    eval_steps lies beyond its last step is warned by RunSummary)."""

    def __init__(self, eval_at_end: bool):
        self.eval_at_end = eval_at_end

    def on_step_end(self, args, state, control, **kwargs):
        # Runs after transformers' DefaultFlowCallback (callbacks run in the order they were added).
        last = state.global_step >= state.max_steps
        if last and not self.eval_at_end and state.eval_steps and state.global_step % state.eval_steps != 0:
            control.should_evaluate = False
        return control


def validation_notice(recipe, validation_samples: int, total_steps: int) -> str | None:
    """Why a recipe that asked for validation (val_size) gets less of it than it may expect, or None."""
    if recipe.val_size <= 0:
        return None
    if validation_samples == 0:
        return (f"evalkit: warning: val_size={recipe.val_size:g} holds out no records of this dataset range: "
                "no validation; raise val_size (a count such as 20, or a larger fraction)")
    every = eval_every(recipe)
    if every <= total_steps:
        return None
    if recipe.eval_at_end:
        return (f"evalkit: warning: eval_steps={every} is beyond the run's {total_steps} step(s): "
                f"validating once, after the last step (eval_at_end=true)")
    return (f"evalkit: warning: eval_steps={every} is beyond the run's {total_steps} step(s): the "
            f"{validation_samples} validation records are never evaluated; set eval_at_end=true "
            f"or eval_steps={total_steps}")


class TrainerLog(TrainerCallback):
    """Append each logged step to ``output_dir/trainer_log.jsonl``, one JSON object a line, with LLaMA-Factory's
    keys (current_steps, total_steps, loss, eval_loss, lr, epoch, percentage, elapsed_time, remaining_time), so
    a loss curve can be drawn while the run goes on (the board's job page) and by tools that read LLaMA-Factory's."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step = time.monotonic(), state.global_step  # a resumed run's rate from its own steps
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or not ({"loss", "eval_loss"} & set(logs)):
            return control  # the end-of-run summary (train_runtime, ...) is no point of a curve
        elapsed = time.monotonic() - self.started
        done, total = state.global_step, state.max_steps
        rate = (done - self.first_step) / elapsed if elapsed > 0 else 0.0
        entry = {"current_steps": done, "total_steps": total, "loss": logs.get("loss"), "eval_loss": logs.get("eval_loss"),
                 "lr": logs.get("learning_rate"), "epoch": state.epoch,
                 "percentage": round(100 * done / total, 2) if total else None,
                 "elapsed_time": round(elapsed, 1), "remaining_time": round((total - done) / rate, 1) if rate else None}
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(args.output_dir) / LOG_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({k: v for k, v in entry.items() if v is not None}) + "\n")
        return control


LOG_FILE = "trainer_log.jsonl"


class ManifestCallback(TrainerCallback):
    """Write train_manifest.json into every checkpoint-N directory as it is saved."""

    def __init__(self, recipe, data_info, base_path, base_identity, trainable):
        self.args = (recipe, data_info, base_path, base_identity, trainable)

    def on_save(self, args, state, control, **kwargs):
        recipe, data_info, base_path, base_identity, trainable = self.args
        directory = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if directory.is_dir() and state.is_world_process_zero:  # the Trainer saved it from rank 0
            checkpoint.name_base_in_adapter(directory, base_path, base_identity)
            checkpoint.write_manifest(directory, checkpoint.build_manifest(recipe, data_info, base_path, base_identity,
                                                                           state, trainable))
        return control
