"""``evalkit run --model X --tasks mmlu,cmmlu``."""

from __future__ import annotations

import argparse
import sys

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
    p.add_argument("--num-fewshot", type=int, default=0, choices=range(0, 6), metavar="K", help="0..5 exemplars (dev split)")
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
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=threads_choice, default=default_threads(), metavar="N|auto",
                   help="CPU threads for torch: auto (default: the cores idle now, so a busy machine does not "
                        "slow to a crawl) or N; $OMP_NUM_THREADS, if set, is the default instead")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the checkpoint")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-cache", action="store_true",
                   help="neither read nor write the request cache (by default a rerun resumes from it: evalkit cache info)")
    backend = p.add_argument_group("backend", "where the numbers are computed (default: transformers in process)")
    backend.add_argument("--backend", choices=["hf", "openai", "vllm"], default="hf",
                         help="hf: transformers in this process; openai: an OpenAI-compatible server; vllm: vLLM's engine")
    backend.add_argument("--base-url", default=None, metavar="URL",
                         help="openai: the server's API root, e.g. http://127.0.0.1:8000/v1 (--model is the served name)")
    backend.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                         help="openai: environment variable holding the API key (the key is never written anywhere)")
    backend.add_argument("--concurrency", type=positive_int, default=8, metavar="N", help="openai: requests in flight")
    backend.add_argument("--max-retries", type=int, default=5, metavar="N",
                         help="openai: retries on 429, 5xx and timeouts, with exponential backoff")
    backend.add_argument("--request-timeout", type=float, default=600.0, metavar="S", help="openai: seconds per request")
    backend.add_argument("--mc-mode", choices=["logprobs", "generate"], default="logprobs",
                         help="openai: multiple choice from the four letters' log-probabilities (exact; default) or "
                              "by generating and parsing a letter (for servers without log-probabilities)")
    backend.add_argument("--tokenizer", default=None, metavar="MODEL",
                         help="openai: a local tokenizer (alias or directory) for --apply-chat-template and to bias "
                              "the four letters into the server's top log-probabilities")
    for flag, kind, text in (("--tensor-parallel-size", positive_int, "GPUs per model replica"),
                             ("--data-parallel-size", positive_int, "model replicas"),
                             ("--gpu-memory-utilization", float, "fraction of GPU memory the engine may take"),
                             ("--max-model-len", positive_int, "context length the engine allocates for")):
        backend.add_argument(flag, type=kind, default=None, metavar="N", help=f"vllm: {text} (vLLM's engine argument)")
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
    value = batch_size(text)
    if value == "auto":
        raise argparse.ArgumentTypeError("use a positive integer")
    return value


VLLM_ENGINE_ARGS = ("tensor_parallel_size", "data_parallel_size", "gpu_memory_utilization", "max_model_len")


def backend_options(args):
    from evalkit.backends import BackendOptions

    if args.backend == "openai" and not args.base_url:
        raise EvalkitError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1, as `evalkit serve` prints)")
    if args.backend != "openai":
        given = [flag for flag, value in (("--base-url", args.base_url), ("--tokenizer", args.tokenizer)) if value]
        if given or args.mc_mode != "logprobs":
            raise EvalkitError(f"{(given or ['--mc-mode'])[0]} is an option of --backend openai; drop it or add --backend openai")
    engine = {name: getattr(args, name) for name in VLLM_ENGINE_ARGS if getattr(args, name, None) is not None}
    if engine and args.backend != "vllm":
        raise EvalkitError(f"--{next(iter(engine)).replace('_', '-')} is an option of --backend vllm; drop it or add --backend vllm")
    return BackendOptions(device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                          base_url=args.base_url, api_key_env=args.api_key_env, concurrency=args.concurrency,
                          timeout=args.request_timeout, max_retries=args.max_retries, mc_mode=args.mc_mode,
                          tokenizer=args.tokenizer, extra=engine)


def run(args) -> int:
    if args.backend != "openai":  # a hub id offline fails in ~2 s, before tasks are read or models loaded
        from evalkit.models.loader import check_hub_model

        check_hub_model(args.model)
    from evalkit.evaluate import results_table, run_evaluation
    from evalkit.evaluators.base import RunConfig

    if args.limit is not None and args.limit < 1:
        raise EvalkitError("--limit must be at least 1")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise EvalkitError("--max-new-tokens must be at least 1")
    from evalkit.threads import set_threads

    threads = set_threads(args.threads)
    config = RunConfig(num_fewshot=args.num_fewshot, limit=args.limit, batch_size=args.batch_size,
                       prompt_style=args.prompt_style, apply_chat_template=args.apply_chat_template,
                       truncation=args.truncation, seed=args.seed, progress=not args.no_progress,
                       full_prompt=args.full_prompt, max_new_tokens=args.max_new_tokens,
                       no_chat_template=args.no_chat_template, use_cache=not args.no_cache,
                       threads=threads, split=args.split, reference_format=args.reference_format)
    results = run_evaluation(args.model, args.tasks, config, args.output_dir, device=args.device, dtype=args.dtype,
                             trust_remote_code=args.trust_remote_code, argv=["evalkit", *sys.argv[1:]],
                             store=args.store, record=not args.no_store, backend=args.backend,
                             options=backend_options(args))
    print()
    print(f"model: {args.model} ({describe_model(results)}), {args.num_fewshot}-shot, prompt style {args.prompt_style}")
    print(results_table(results))
    from evalkit.profile import format_profile

    print(format_profile(results["profile"]))
    print(f"\nresults: {results['results_file']}")
    if results.get("store", {}).get("run_id") is not None:
        print(f"store: run {results['store']['run_id']} in {results['store']['url']}")
    return 0


def describe_model(results: dict) -> str:
    model, backend = results["model"], results.get("backend", {}).get("name", "hf")
    parts = [model.get("kind"), model.get("dtype"), model.get("device")]
    if backend != "hf":
        parts.append(f"backend {backend}")
    return ", ".join(str(p) for p in parts if p)
