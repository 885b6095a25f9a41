"""evalkit's trainer and LLaMA-Factory side by side: the same recipe, the same data, one after the other.

For each method (LoRA, QLoRA 4-bit, full, freeze) both tools train SmolLM2-135M-Instruct (fp32, CPU)
on the same 880 alpaca_zh_demo training records (rows [0:900] less evalkit's fixed 20-record validation
split, which LLaMA-Factory gets as its eval_dataset), with matched settings: the trainers/<method>.yaml
hyper-parameters, batch 4, cutoff 192 with the same truncation (evalkit's default is LLaMA-Factory's),
data order from the same seed (the losses agree at every step), gradient checkpointing off in both
(LLaMA-Factory's default is on), one thread each, one validation pass after the last step in both.
Each (tool, method) runs in its own process; the order alternates (evalkit first, then LLaMA-Factory
first, ...) so a change in machine load does not always favour one tool.

Measured the same way in both, by one TrainerCallback passed to each tool (``StepMeter`` below):
training tokens = non-pad tokens (attention-mask sum) of every training forward pass; tokens/s over
steps 2..N (step 1 holds one-off set-up), timed from the end of step 1 to the end of step N (so data
collation, loss and logging between steps are included; the validation pass is not), and the same
tokens per CPU-second of the process (on a shared machine wall time follows the load; CPU time much
less so); peak RSS of the
process at the end of training; the loss at every step; the final validation loss.

    bash benchmarks/setup_llamafactory.sh        # once: .venv-llamafactory
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_vs_llamafactory.py --steps 6
    .venv/bin/python benchmarks/train_vs_llamafactory.py --methods lora --steps 5 --log /tmp/lf.txt

The worker half of this file runs in either virtualenv, so it imports neither tool at module level.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LF_PYTHON = REPO / ".venv-llamafactory" / "bin" / "python"
DATASET = "tasks/data/sft/alpaca_zh_demo.json"
RANGE, VAL_SIZE, CUTOFF, BATCH, SEED = (0, 900), 20, 192, 4, 42
# evalkit recipe -> LLaMA-Factory finetuning options; hyper-parameters come from trainers/<recipe>.yaml
METHODS = {
    "lora": ("lora", {"finetuning_type": "lora"}),
    "qlora": ("qlora", {"finetuning_type": "lora", "quantization_bit": 4, "quantization_type": "nf4",
                        "double_quantization": True}),
    "full": ("full", {"finetuning_type": "full"}),
    "freeze": ("freeze", {"finetuning_type": "freeze"}),
}
SHARED_KEYS = ("learning_rate", "lr_scheduler_type", "warmup_steps", "lora_rank", "lora_alpha", "lora_target",
               "lora_dropout", "freeze_trainable_layers", "freeze_trainable_modules")


def step_meter_class():
    from transformers import TrainerCallback

    class StepMeter(TrainerCallback):
        """Tokens, time, loss per step and peak RSS, identically in both tools."""

        def __init__(self):
            self.tokens, self.ends, self.cpu_ends, self.cumulative, self.losses, self.eval_loss = 0, [], [], [], {}, None
            self.peak_rss_mb, self.trainable, self._hook = None, None, None

        def _count(self, module, args, kwargs):
            if module.training:
                mask = kwargs.get("attention_mask")
                self.tokens += int(mask.sum()) if mask is not None else kwargs["input_ids"].numel()

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self._hook = model.register_forward_pre_hook(self._count, with_kwargs=True)
            self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            self.optim = str(args.optim)

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())
            self.cpu_ends.append(time.process_time())  # CPU seconds of this process: far less load-dependent
            self.cumulative.append(self.tokens)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses[state.global_step] = float(logs["loss"])
            if logs and "eval_loss" in logs:
                self.eval_loss = float(logs["eval_loss"])

        def on_train_end(self, args, state, control, **kwargs):
            self.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
            self._hook.remove()

        def result(self) -> dict:
            tokens, seconds = self.cumulative[-1] - self.cumulative[0], self.ends[-1] - self.ends[0]
            cpu_seconds = self.cpu_ends[-1] - self.cpu_ends[0]
            return {"steps": len(self.ends), "tokens_steps_2_n": tokens, "seconds_steps_2_n": seconds,
                    "tokens_per_s": tokens / seconds if seconds > 0 else None, "tokens_total": self.tokens,
                    "cpu_seconds_steps_2_n": cpu_seconds, "tokens_per_cpu_s": tokens / cpu_seconds if cpu_seconds > 0 else None,
                    "peak_rss_mb": self.peak_rss_mb, "losses": [self.losses.get(s) for s in range(1, len(self.ends) + 1)],
                    "eval_loss": self.eval_loss, "trainable": self.trainable, "optim": self.optim}

    return StepMeter()


def llamafactory_tokens(spec: dict, output: Path) -> None:
    """LLaMA-Factory's tokenised train and validation sets (ids, labels), as its sft workflow builds them."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args(spec)
    loaded = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(loaded["tokenizer"], data_args)
    data = get_dataset(template, model_args, data_args, training_args, "sft", **loaded)
    output.write_text(json.dumps({name: [[r["input_ids"], r["labels"]] for r in data[key]] for name, key in
                                  (("train", "train_dataset"), ("validation", "eval_dataset"))}), encoding="utf-8")


def compare_tokens(spec: dict, theirs_file: Path) -> str:
    """How many examples tokenise to the same ids and labels in both tools."""
    sys.path.insert(0, str(REPO))
    from evalkit.train.data import load_training_data
    from evalkit.train.recipe import recipe_from_dict
    from evalkit.train.runner import load_tokenizer

    ours = load_training_data(recipe_from_dict(spec), load_tokenizer(spec["model"]))
    theirs = json.loads(theirs_file.read_text(encoding="utf-8"))
    parts = []
    for name, mine in (("train", ours.train), ("validation", ours.validation)):
        same = sum(a["input_ids"] == b[0] and a["labels"] == b[1] for a, b in zip(mine, theirs[name]))
        parts.append(f"{name} {same}/{len(mine)} (LLaMA-Factory has {len(theirs[name])})")
        truncated = sum(len(a["input_ids"]) >= CUTOFF for a in mine)
        parts[-1] += f", {truncated} cut at {CUTOFF}"
    return "identical ids and labels: " + "; ".join(parts)


def worker(args) -> None:
    import torch

    torch.set_num_threads(1)
    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    meter = step_meter_class()
    started = time.perf_counter()
    if args.worker == "tokens":
        llamafactory_tokens({**spec["llamafactory"], "do_train": True}, Path(args.spec).with_suffix(".tokens.json"))
        return
    if args.worker == "evalkit":
        sys.path.insert(0, str(REPO))
        from evalkit.train.recipe import recipe_from_dict
        from evalkit.train.runner import train

        train(recipe_from_dict(spec["evalkit"], "benchmark"), callbacks=[meter])
    else:
        from llamafactory.train.tuner import run_exp

        run_exp(args=spec["llamafactory"], callbacks=[meter])
    out = {"tool": args.worker, "wall_s": time.perf_counter() - started, **meter.result(),
           "versions": versions()}
    print("RESULT " + json.dumps(out))


def versions() -> dict:
    import torch
    import transformers

    found = {"torch": torch.__version__, "transformers": transformers.__version__}
    for name in ("peft", "llamafactory", "bitsandbytes"):
        try:
            found[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - not installed in this virtualenv
            pass
    return found


def load_recipe_options(name: str) -> dict:
    import yaml

    return yaml.safe_load((REPO / "trainers" / f"{name}.yaml").read_text(encoding="utf-8"))


def prepare(scratch: Path) -> Path:
    """A clean model copy both tools load (config without the GGUF-cache marker, weights symlinked),
    and LLaMA-Factory's dataset files holding exactly evalkit's train/validation split."""
    sys.path.insert(0, str(REPO))
    from evalkit.train.data import split_validation
    from evalkit.train.runner import resolve_base

    source = Path(resolve_base("smollm2-135m-instruct")[0])
    model = scratch / "smollm2-135m-instruct"
    model.mkdir()
    for item in source.iterdir():
        if item.name == "config.json":
            config = json.loads(item.read_text(encoding="utf-8"))
            config.pop("quantization_config", None)
            (model / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        elif item.is_file():
            (model / item.name).symlink_to(item)
    records = json.loads((REPO / DATASET).read_text(encoding="utf-8"))[RANGE[0]:RANGE[1]]
    train, validation, _ = split_validation(records, VAL_SIZE)
    data = scratch / "data"
    data.mkdir()
    for name, subset in (("train", train), ("validation", validation)):
        (data / f"{name}.json").write_text(json.dumps(subset, ensure_ascii=False), encoding="utf-8")
    (data / "dataset_info.json").write_text(json.dumps({
        "bench_train": {"file_name": "train.json"}, "bench_validation": {"file_name": "validation.json"}}))
    return model


def chat_template_system(model: Path) -> str:
    """The system prompt the model's own chat template adds by default. evalkit renders prompts with it;
    LLaMA-Factory's smollm2 template has its own (with a final "."), so it gets this one as default_system
    and both tools train on identical token ids."""
    from transformers import AutoTokenizer

    text = AutoTokenizer.from_pretrained(str(model)).apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    head = "<|im_start|>system\n"
    return text[text.index(head) + len(head):text.index("<|im_end|>")] if head in text else ""


def spec_for(method: str, steps: int, model: Path, scratch: Path) -> dict:
    recipe_name, lf_method = METHODS[method]
    options = load_recipe_options(recipe_name)
    evalkit = {
        **{k: v for k, v in options.items() if k not in ("output_dir", "report_to", "model")},
        "model": str(model), "dataset": DATASET, "dataset_range": list(RANGE), "val_size": VAL_SIZE,
        "cutoff_len": CUTOFF, "truncation": "llamafactory", "per_device_train_batch_size": BATCH,
        "gradient_accumulation_steps": 1, "max_steps": steps, "logging_steps": 1, "save_steps": 10**6,
        "eval_steps": steps, "seed": SEED, "gradient_checkpointing": False, "report_to": "none",
        "output_dir": str(scratch / f"evalkit-{method}"),
    }
    llamafactory = {
        "model_name_or_path": str(model), "template": "smollm2", "default_system": chat_template_system(model), "stage": "sft", "do_train": True, **lf_method,
        **{k: options[k] for k in SHARED_KEYS if k in options},
        "dataset_dir": str(scratch / "data"), "dataset": "bench_train", "eval_dataset": "bench_validation",
        "cutoff_len": CUTOFF, "overwrite_cache": True, "per_device_train_batch_size": BATCH,
        "per_device_eval_batch_size": BATCH, "gradient_accumulation_steps": 1, "max_steps": steps,
        "logging_steps": 1, "save_steps": 10**6, "eval_strategy": "steps", "eval_steps": steps, "seed": SEED,
        "disable_gradient_checkpointing": True, "report_to": "none", "plot_loss": False,
        "dataloader_num_workers": 0, "output_dir": str(scratch / f"llamafactory-{method}"), "overwrite_output_dir": True,
    }
    if "lora_target" in llamafactory and isinstance(llamafactory["lora_target"], list):
        llamafactory["lora_target"] = ",".join(llamafactory["lora_target"])
    if method == "freeze" and isinstance(llamafactory.get("freeze_trainable_modules"), list):
        llamafactory["freeze_trainable_modules"] = ",".join(llamafactory["freeze_trainable_modules"])
    return {"evalkit": evalkit, "llamafactory": llamafactory}


def uptime() -> str:
    """The 1/5/15-minute load averages, as `uptime` prints them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def worker_env(tool: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1",
            "PYTHONPATH": str(REPO) if tool == "evalkit" else ""}


def run_one(tool: str, method: str, spec_path: Path, scratch: Path, say) -> dict | None:
    python = sys.executable if tool == "evalkit" else str(LF_PYTHON)  # "tokens" runs in LLaMA-Factory's venv
    env = worker_env(tool)
    before = uptime()
    log = scratch / f"{tool}-{method}.log"
    with log.open("w") as handle:
        code = subprocess.run([python, __file__, "--worker", tool, "--spec", str(spec_path)], env=env,
                              stdout=handle, stderr=subprocess.STDOUT, cwd=REPO).returncode
    after = uptime()
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    result = next((json.loads(line[7:]) for line in lines if line.startswith("RESULT ")), None)
    if code != 0 or result is None:
        say(f"  {tool:12s} {method}: FAILED (exit {code}); last lines of {log}:")
        for line in lines[-15:]:
            say("    " + line)
        return None
    result.update(load_before=before, load_after=after)
    say(f"  {tool:12s} {method:6s} {result['tokens_per_s']:7.1f} tokens/s ({result['tokens_per_cpu_s']:.1f} per CPU-s)  peak RSS {result['peak_rss_mb']:6.0f} MB  "
        f"wall {result['wall_s']:5.0f} s  eval loss {result['eval_loss']}  load {before} -> {after}")
    return result


def fmt_loss(value) -> str:
    return f"{value:.4f}" if value is not None else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="lora,qlora,full,freeze")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--log", default=None, help="log file (default docs/benchmarks/train_vs_llamafactory_<date>.txt)")
    parser.add_argument("--worker", choices=["evalkit", "llamafactory", "tokens"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if not LF_PYTHON.is_file():
        sys.exit(f"{LF_PYTHON} does not exist; run: bash benchmarks/setup_llamafactory.sh")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        sys.exit(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    log_path = Path(args.log or REPO / "docs" / "benchmarks" / f"train_vs_llamafactory_{date.today()}.txt")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("", encoding="utf-8")

    def say(text: str = "") -> None:  # written as it goes: a long run cut short keeps what it measured
        print(text, flush=True)
        with log_path.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")

    from evalkit.results import cpu_model
    say(f"# evalkit train vs LLaMA-Factory, {date.today()}, {platform.node()} ({os.cpu_count()} CPUs, "
        f"{cpu_model()}), {args.steps} steps per run, OMP_NUM_THREADS=1")
    say(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="evalkit-vs-lf-") as tmp:
        scratch = Path(tmp)
        model = prepare(scratch)
        spec_path = scratch / "spec-tokens.json"
        spec = spec_for("lora", args.steps, model, scratch)
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        code = subprocess.run([str(LF_PYTHON), __file__, "--worker", "tokens", "--spec", str(spec_path)],
                              env=worker_env("llamafactory"), cwd=REPO, capture_output=True, text=True).returncode
        say(compare_tokens(spec["evalkit"], spec_path.with_suffix(".tokens.json")) if code == 0
            else f"LLaMA-Factory's tokenisation failed (exit {code})")
        for index, method in enumerate(methods):
            spec_path = scratch / f"spec-{method}.json"
            spec_path.write_text(json.dumps(spec_for(method, args.steps, model, scratch)), encoding="utf-8")
            order = ("evalkit", "llamafactory") if index % 2 == 0 else ("llamafactory", "evalkit")
            for tool in order:
                results[f"{tool}/{method}"] = run_one(tool, method, spec_path, scratch, say)
    say()
    say("| method | tool | trainable params | tokens/s (steps 2-N) | tokens per CPU-second | peak RSS (MB) | final val loss | load avg before -> after |")
    say("|---|---|---|---|---|---|---|---|")
    for method in methods:
        for tool in ("evalkit", "llamafactory"):
            r = results.get(f"{tool}/{method}")
            if r:
                say(f"| {method} | {tool} | {r['trainable']:,} | {r['tokens_per_s']:.1f} | {r['tokens_per_cpu_s']:.1f} | {r['peak_rss_mb']:,.0f} | "
                    f"{fmt_loss(r['eval_loss'])} | {r['load_before']} -> {r['load_after']} |")
            else:
                say(f"| {method} | {tool} | failed | | | | | |")
    say()
    say("| method | evalkit / LLaMA-Factory tokens/s | per CPU-second | peak RSS ratio | same non-pad tokens |")
    say("|---|---|---|---|---|")
    for method in methods:
        e, l = results.get(f"evalkit/{method}"), results.get(f"llamafactory/{method}")
        if e and l:
            same = "yes" if e["tokens_total"] == l["tokens_total"] else f"no ({e['tokens_total']} vs {l['tokens_total']})"
            say(f"| {method} | {e['tokens_per_s'] / l['tokens_per_s']:.2f}x | {e['tokens_per_cpu_s'] / l['tokens_per_cpu_s']:.2f}x | "
                f"{e['peak_rss_mb'] / l['peak_rss_mb']:.2f} | {same} |")
    say()
    for method in methods:
        e, l = results.get(f"evalkit/{method}"), results.get(f"llamafactory/{method}")
        if e and l:
            say(f"loss per step, {method}: step evalkit llamafactory")
            for step, (a, b) in enumerate(zip(e["losses"], l["losses"]), 1):
                say(f"  {step:3d} {fmt_loss(a)} {fmt_loss(b)}")
    for tool in ("evalkit", "llamafactory"):
        found = next((r for k, r in results.items() if r and k.startswith(tool)), None)
        if found:
            say(f"# {tool}: {json.dumps(found['versions'])}, optimiser {found['optim']}")
    print(f"log: {log_path}")


if __name__ == "__main__":
    main()
