"""evalkit serve --model X: put a model behind an OpenAI-compatible API on 127.0.0.1 (the deploy step).

Anything evalkit run --model accepts (embedded alias, directory, GGUF file, PEFT adapter) is served
at /v1/models (and /v1/models/NAME), /v1/completions (text or token-id prompts; logprobs, echo,
logit_bias, stop) and /v1/chat/completions (text content parts; streaming, with usage on request).
Fields the server does not implement are refused by name. One access-log line per request goes to
stderr. Evaluate it with: evalkit run --backend openai --base-url http://HOST:PORT/v1 --model NAME.
"""

from __future__ import annotations

import os

from evalkit.commands.run import positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve a model behind an OpenAI-compatible API", description=__doc__)
    p.add_argument("--model", required=True, help="embedded alias, local dir, .gguf file, PEFT adapter dir or hub id")
    p.add_argument("--served-model-name", default=None, metavar="NAME", help="the name clients ask for (default: --model)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    key = p.add_mutually_exclusive_group()
    key.add_argument("--api-key", default=os.environ.get("EVALKIT_SERVE_API_KEY"),
                     help="require 'Authorization: Bearer KEY' (default: $EVALKIT_SERVE_API_KEY; none: no auth). "
                          "On the command line the key is readable in `ps`: prefer --api-key-file or the variable")
    key.add_argument("--api-key-file", default=None, metavar="PATH",
                     help="read the API key from this file (its first line)")
    p.add_argument("--max-tokens-limit", type=positive_int, default=2048, metavar="N", help="largest max_tokens a request may ask")
    p.add_argument("--max-request-bytes", type=positive_int, default=4 << 20, metavar="N", help="largest request body accepted")
    p.add_argument("--engine", choices=["hf", "vllm"], default="hf",
                   help="hf: evalkit's own server over transformers; vllm: start vLLM's OpenAI server (vllm serve) "
                        "on the same model, adapters as --lora-modules")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import uvicorn

    from evalkit.errors import EvalkitError
    from evalkit.models.loader import load_model
    from evalkit.serve.app import create_app
    from evalkit.serve.engine import ServedModel

    if not 0 < args.port < 65536:
        raise EvalkitError(f"--port {args.port}: use 1..65535")
    args.api_key = api_key(args)
    if args.engine == "vllm":
        return run_vllm(args)
    lm = load_model(args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    name = args.served_model_name or args.model
    app = create_app(ServedModel(lm, name), api_key=args.api_key, max_tokens_limit=args.max_tokens_limit,
                     max_request_bytes=args.max_request_bytes)
    log_to_stderr()
    auth = "bearer-token auth on" if args.api_key else "no auth"
    print(f"evalkit serve: {name} ({lm.identity.get('kind')}, {lm.dtype}, {lm.device}) at "
          f"http://{args.host}:{args.port}/v1 ({auth})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def api_key(args) -> str | None:
    """The key from --api-key-file (first line), else --api-key / $EVALKIT_SERVE_API_KEY; None: no auth."""
    from evalkit.errors import EvalkitError

    path = getattr(args, "api_key_file", None)
    if not path:
        return args.api_key or None
    try:
        with open(path, encoding="utf-8") as handle:
            key = handle.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalkitError(f"--api-key-file {path}: cannot read it ({exc.__class__.__name__}: {exc}); "
                           "name a readable text file holding the key") from None
    if not key:
        raise EvalkitError(f"--api-key-file {path}: the file's first line is empty; put the key there")
    return key


def log_to_stderr() -> None:
    """Access lines and server errors (with their request ids) to stderr, without other libraries' INFO chatter."""
    import logging
    import sys

    logger = logging.getLogger("evalkit.serve")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def vllm_environment(args) -> dict[str, str]:
    """The environment for ``vllm serve``: the API key goes in $VLLM_API_KEY (vLLM reads it), never in argv."""
    env = dict(os.environ)
    if args.api_key:
        env["VLLM_API_KEY"] = args.api_key
    return env


def vllm_command(args) -> list[str]:
    """``vllm serve`` for what --model names: embedded/GGUF models as their dequantised directory, a PEFT
    adapter as a LoRA module on its base (vLLM applies it per request; nothing is merged)."""
    import shutil
    import sys
    from pathlib import Path

    from evalkit.errors import EvalkitError
    from evalkit.models.source import resolve_model

    source = resolve_model(args.model).check_vllm()  # the same checks and LoRA rank as --backend vllm
    name = args.served_model_name or args.model
    extra: list[str] = []
    served = name
    if source.kind == "peft_adapter":
        extra = ["--enable-lora", "--lora-modules", f"{name}={source.path}",
                 "--max-lora-rank", str(source.max_lora_rank)]
        served = f"{name}-base"
    vllm = shutil.which("vllm") or str(Path(sys.executable).with_name("vllm"))
    if not Path(vllm).exists():
        raise EvalkitError("--engine vllm needs vLLM installed in this environment (pip install 'evalkit[vllm]'; "
                           "on CPU: bash benchmarks/setup_vllm.sh)")
    model = str(source.weights_dir)  # after the cheap checks: an embedded/GGUF model may dequantise here (slow)
    command = [vllm, "serve", model, "--served-model-name", served, "--host", args.host, "--port", str(args.port),
               "--dtype", "float32" if args.dtype == "auto" and args.device in ("auto", "cpu") else args.dtype, *extra]
    return command  # the API key travels in the environment (vllm_environment): argv is readable in `ps`


def run_vllm(args) -> int:
    command = vllm_command(args)
    auth = " (API key in $VLLM_API_KEY)" if args.api_key else ""
    print("evalkit serve: " + " ".join(command) + auth, flush=True)
    os.execve(command[0], command, vllm_environment(args))
    return 0
