"""``evalkit profile``: load a model, measure its perplexity on a text set, prefill and decode speed."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

from evalkit.errors import EvalkitError
from evalkit.models.loader import load_model
from evalkit.backends.hf.perplexity import perplexity
from evalkit.tasks.perplexity_spec import PerplexitySpec, load_documents
from evalkit.profile.profiler import Profiler
from evalkit.results import RunOutput, environment
from evalkit.tasks.registry import resolve_tasks


def measure_decode(lm, prompt_ids: list[int], new_tokens: int) -> dict:
    """Greedy decoding with the KV cache, timed apart from the prompt's forward pass."""
    import torch

    from evalkit.backends.hf.kv_cache import CACHE_KWARG

    with torch.inference_mode():
        ids = torch.tensor([prompt_ids], device=lm.device)
        started = time.perf_counter()
        out = lm.model(input_ids=ids, use_cache=True)
        prefill_s = time.perf_counter() - started
        past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        started = time.perf_counter()
        for _ in range(new_tokens - 1):  # the first new token came from the prefill pass
            out = lm.model(input_ids=token, use_cache=True, **{CACHE_KWARG: past})
            past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        if lm.device.startswith("cuda"):
            torch.cuda.synchronize()
        decode_s = time.perf_counter() - started
    return {"prompt_tokens": len(prompt_ids), "prefill_s": prefill_s, "decode_tokens": new_tokens - 1, "decode_s": decode_s}


def run_profile(model: str, text_set: str = "perplexity_default", *, output_dir: str = "results", device: str = "auto",
                dtype: str = "auto", trust_remote_code: bool = False, decode_tokens: int = 64, limit: int | None = None,
                progress: bool = True, argv: list[str] | None = None, store: str | None = None, record: bool = True) -> dict:
    selections = resolve_tasks(text_set)
    spec = selections[0].spec
    if not isinstance(spec, PerplexitySpec):
        raise EvalkitError(f"--text-set {text_set}: {spec.path} is a {spec.type} task, not a perplexity text set")
    if decode_tokens < 2:
        raise EvalkitError("--decode-tokens must be at least 2")
    documents, files = load_documents(spec)
    if limit is not None:
        documents = documents[:limit]
    output = RunOutput(output_dir, model)
    output.results_path = output.directory / f"profile_{output.stamp}.json"
    output.check_writable()

    with Profiler() as prof:
        with prof.phase("model_load"):
            lm = load_model(model, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        started = time.perf_counter()
        with prof.phase("perplexity"):
            summary, rows = perplexity(lm, documents, spec.window, spec.stride, progress=progress)
        prof.add_tokens("prefill", sum(r["prompt_tokens"] for r in rows), time.perf_counter() - started)
        prompt = lm.tokenizer(documents[0].text)["input_ids"][:128]
        with prof.phase("decode"):
            decode = measure_decode(lm, prompt, decode_tokens)
        prof.add_tokens("decode", decode["decode_tokens"], decode["decode_s"])
        prof.extra.update(perplexity=summary["perplexity"], perplexity_llamafactory=summary["perplexity_llamafactory"],
                          text_set=spec.name, decode_benchmark=decode)
    for row in rows:
        row["task"] = spec.name
    samples = output.write_samples(spec.name, rows)
    block = {"type": "perplexity", "spec": str(spec.path), "spec_sha256": spec.spec_hash(), "data_files": files,
             "samples_file": samples.name, **summary}
    results = {
        "kind": "profile",
        "evalkit_version": environment()["evalkit"],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": argv if argv is not None else sys.argv,
        "model": {"name": model, **lm.identity, "dtype": lm.dtype, "device": lm.device, "context_length": lm.context_length},
        "config": {"text_set": spec.name, "decode_tokens": decode_tokens, "limit": limit},
        "environment": environment(),
        "tasks": {spec.name: block},
        "profile": prof.result(),
    }
    results["results_file"] = str(output.write_results(results))
    if record:
        from evalkit.store import record_results_safely

        results["store"] = record_results_safely(results, results["results_file"], store)
    return results
