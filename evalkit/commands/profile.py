"""``evalkit profile --model X``: memory, load time, prefill/decode tokens/s and perplexity, stored."""

from __future__ import annotations

import sys

from evalkit.commands.run import describe_model


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("profile", help="profile a model: memory, tokens/s, perplexity", description=__doc__)
    p.add_argument("--model", required=True, help="embedded alias, local dir, .gguf file, PEFT adapter dir or hub id")
    p.add_argument("--text-set", default="perplexity_default", help="a type: perplexity task (name or spec .yaml)")
    p.add_argument("--limit", type=int, default=None, help="only the first N documents of the text set")
    p.add_argument("--decode-tokens", type=int, default=64, help="greedy tokens generated to time decoding")
    p.add_argument("--output-dir", default="results", help="where profile_*.json and samples_*.jsonl go")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--store", default=None, metavar="URL", help="results store (SQLite path or SQLAlchemy URL)")
    p.add_argument("--no-store", action="store_true", help="do not record this profile in the results store")
    p.set_defaults(func=run)


def run(args) -> int:
    from evalkit.errors import EvalkitError
    from evalkit.profile import format_profile
    from evalkit.profile.session import run_profile

    if args.limit is not None and args.limit < 1:
        raise EvalkitError("--limit must be at least 1")
    results = run_profile(args.model, args.text_set, output_dir=args.output_dir, device=args.device, dtype=args.dtype,
                          trust_remote_code=args.trust_remote_code, decode_tokens=args.decode_tokens, limit=args.limit,
                          progress=not args.no_progress, argv=["evalkit", *sys.argv[1:]], store=args.store,
                          record=not args.no_store)
    block = next(iter(results["tasks"].values()))
    print(f"\nmodel: {args.model} ({describe_model(results)})")
    print(f"perplexity on {results['config']['text_set']} ({block['documents']} documents, {block['predicted_tokens']} "
          f"predicted tokens, window {block['window']}, stride {block['stride']}): {block['perplexity']:.4f}")
    print(f"perplexity_llamafactory (mean over documents of exp(mean NLL)): {block['perplexity_llamafactory']:.4f}")
    print(format_profile(results["profile"]))
    print(f"\nprofile: {results['results_file']}")
    if results.get("store", {}).get("run_id") is not None:
        print(f"store: run {results['store']['run_id']} in {results['store']['url']}")
    return 0
