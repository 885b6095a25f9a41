"""``evalkit run --model X --tasks mmlu,cmmlu``."""

from __future__ import annotations

import argparse
import sys

from evalkit.commands.listing import INCLUDE_HELP
from evalkit.errors import EvalkitError


def batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use a positive integer or 'auto'") from None
    if value < 1:
        raise argparse.ArgumentTypeError("use a positive integer or 'auto'")
    return value


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("run", help="evaluate a model on tasks", description=__doc__)
    p.add_argument("--model", required=True, help="embedded alias, local dir, .gguf file, PEFT adapter dir or hub id")
    p.add_argument("--tasks", required=True, help="comma-separated: mmlu, cmmlu:agronomy, path/to/spec.yaml")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR", help=INCLUDE_HELP)
    p.add_argument("--num-fewshot", type=int, default=None, choices=range(0, 33), metavar="K",
                   help="exemplars before each question: multiple choice 0..5 from the dev split (default 0); "
                        "generation tasks with a fewshot source default to their spec's k (gsm8k: 8)")
    p.add_argument("--limit", type=int, default=None, help="at most N questions per subject")
    p.add_argument("--batch-size", type=batch_size, default=1, help="N or auto")
    p.add_argument("--prompt-style", default="llamafactory", help="llamafactory (default) or lm_eval")
    p.add_argument("--apply-chat-template", action="store_true", help="wrap prompts in the model's chat template")
    p.add_argument("--truncation", choices=["error", "left"], default="error",
                   help="prompts longer than the context: stop with an error (default) or keep their last tokens")
    p.add_argument("--full-prompt", action="store_true", help="compute every prompt whole (no few-shot prefix reuse)")
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                   help="generation tasks: at most N new tokens per sample (default: the task spec's max_new_tokens)")
    p.add_argument("--no-chat-template", action="store_true",
                   help="generation tasks: plain prompts even when the model has a chat template (used by default)")
    p.add_argument("--split", default=None, metavar="NAME",
                   help="multiple-choice tasks: evaluate this split instead of the spec's (ceval: test writes "
                        "predictions for C-Eval's leaderboard, no accuracy)")
    p.add_argument("--reference-format", choices=["plain", "llamafactory"], default="plain",
                   help="generation tasks: score against the reference as written (default) or as LLaMA-Factory's "
                        "predict does (decoded label with the template's end of turn, e.g. a trailing newline)")
    p.add_argument("--output-dir", default="results", help="where results_*.json and samples_*.jsonl go")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="auto", help="auto (fp32 on CPU, bf16 on CUDA), float32, bfloat16, float16")
    p.add_argument("--seed", type=seed_value, default=1234, help="0..2**32-1 (random, numpy and torch all take it)")
    p.add_argument("--threads", type=threads_choice, default=default_threads(), metavar="N|auto",
                   help="CPU threads for torch: auto (default: the cores idle now, so a busy machine does not "
                        "slow to a crawl) or N; $OMP_NUM_THREADS, if set, is the default instead")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the checkpoint")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the request cache (by default a rerun resumes from it: evalkit cache info)")
    from evalkit.backends import BACKENDS, DEFAULT_BACKEND, backend_class
    from evalkit.backends.options import add_flags

    backend = p.add_argument_group("backend", "where the numbers are computed (default: transformers in process)")
    backend.add_argument("--backend", choices=list(BACKENDS), default=DEFAULT_BACKEND,
                         help="hf (default): transformers in this process; openai: an OpenAI-compatible server; "
                              "vllm: vLLM's engine; others: docs/backends.md")
    backend.add_argument("--backend-arg", action="append", default=[], metavar="KEY=VALUE",
                         help="a setting of the chosen backend (repeatable), e.g. max_num_seqs=16 for vllm; "
                              "unknown keys are refused with the list the backend takes")
    p.set_defaults(backend_flags=add_flags(backend, {name: backend_class(name) for name in BACKENDS}))
    p.add_argument("--store", default=None, metavar="URL",
                   help="results store: a SQLite path or SQLAlchemy URL (default: $EVALKIT_STORE or the user data dir)")
    p.add_argument("--no-store", action="store_true", help="do not record this run in the results store")
    p.set_defaults(func=run)


def threads_choice(text: str) -> int | str:
    return "auto" if text == "auto" else positive_int(text)


def default_threads() -> int | str:
    import os

    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else "auto"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError("use a positive integer")
    return value


def seed_value(text: str) -> int:
    """A seed every generator accepts (torch.manual_seed overflows on a 24-digit one; numpy stops at 2**32-1)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use an integer from 0 to 4294967295") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError("use an integer from 0 to 4294967295")
    return value


def backend_options(args):
    """The chosen backend's options (its own model: backends/options.py), checked before anything loads."""
    from evalkit.backends import backend_class
    from evalkit.backends.options import build_options, parse_backend_args

    flags = {field: getattr(args, field) for field in args.backend_flags if hasattr(args, field)}
    common = {"device": args.device, "dtype": args.dtype, "trust_remote_code": args.trust_remote_code}
    return build_options(args.backend, backend_class(args.backend), common, flags,
                         parse_backend_args(args.backend_arg), args.backend_flags)


def multiple_choice_fewshot(selections) -> int:
    """Multiple-choice k without --num-fewshot: 0, or the num_fewshot of the lm-eval task files named."""
    wanted = {s.default_fewshot or 0 for s in selections if s.spec.type == "multiple_choice"}
    if len(wanted) > 1:
        raise EvalkitError(f"--tasks names multiple-choice tasks with different few-shot defaults "
                           f"({', '.join(map(str, sorted(wanted)))}: lm-eval files' num_fewshot, else 0); pass --num-fewshot")
    return wanted.pop() if wanted else 0


def run(args) -> int:
    from evalkit.tasks.registry import set_include_paths

    set_include_paths(args.include_path)  # a missing directory fails before anything is loaded
    from evalkit.tasks.registry import resolve_tasks

    selections = resolve_tasks(args.tasks)  # specs are read before torch is imported: a bad one costs ~0.1 s
    from evalkit.backends import backend_class

    options = backend_options(args)
    backend_class(args.backend).check_model(args.model)  # e.g. a hub id offline: ~2 s, before tasks are read
    from evalkit.evaluate import results_table, run_evaluation
    from evalkit.evaluators.base import RunConfig

    if args.limit is not None and args.limit < 1:
        raise EvalkitError("--limit must be at least 1")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise EvalkitError("--max-new-tokens must be at least 1")
    k = args.num_fewshot if args.num_fewshot is not None else multiple_choice_fewshot(selections)
    config = RunConfig(num_fewshot=k, fewshot_given=args.num_fewshot is not None, limit=args.limit, batch_size=args.batch_size,
                       prompt_style=args.prompt_style, apply_chat_template=args.apply_chat_template,
                       truncation=args.truncation, seed=args.seed, progress=not args.no_progress,
                       full_prompt=args.full_prompt, max_new_tokens=args.max_new_tokens,
                       no_chat_template=args.no_chat_template, use_cache=not args.no_cache,
                       split=args.split, reference_format=args.reference_format)
    results = run_evaluation(args.model, selections, config, args.output_dir, device=args.device, dtype=args.dtype,
                             trust_remote_code=args.trust_remote_code, argv=["evalkit", *sys.argv[1:]],
                             store=args.store, record=not args.no_store, backend=args.backend,
                             options=options, threads=args.threads)
    print()
    setting = f"{config.num_fewshot}-shot, prompt style {args.prompt_style}"  # what multiple choice prompts depend on
    if all(task["type"] != "multiple_choice" for task in results["tasks"].values()):
        used = {task.get("chat_template") for task in results["tasks"].values()}
        setting = "chat template " + ("on" if used == {True} else "off" if used == {False} else "on for some tasks")
    print(f"model: {args.model} ({describe_model(results)}), {setting}")
    print(results_table(results))
    from evalkit.profile import format_profile

    print(format_profile(results["profile"]))
    print(f"\nresults: {results['results_file']}")
    if results.get("store", {}).get("run_id") is not None:
        print(f"store: run {results['store']['run_id']} in {results['store']['url']}")
    return 0


def describe_model(results: dict) -> str:
    from evalkit.backends import DEFAULT_BACKEND

    model, backend = results["model"], results.get("backend", {}).get("name", DEFAULT_BACKEND)
    parts = [model.get("kind"), model.get("dtype"), model.get("device")]
    if backend != DEFAULT_BACKEND:  # the default goes without saying
        parts.append(f"backend {backend}")
    return ", ".join(str(p) for p in parts if p)
