"""Tokens processed by one evaluated task, read back from its per-sample JSONL.

Multiple choice and perplexity only run forward passes over the prompt: all prefill. Generation
rows carry prompt and generated token counts; when the evaluator timed prefill and decode apart
(``timing`` in its results block) each gets its own rate, otherwise decode tokens/s is over the
task's whole time and says so (``includes_prefill``).
"""

from __future__ import annotations

import json
from pathlib import Path

PROMPT_KEYS = ("prompt_tokens", "input_tokens", "tokens")
GENERATED_KEYS = ("generated_tokens", "completion_tokens", "output_tokens", "new_tokens")


def _first(row: dict, keys: tuple[str, ...]) -> int:
    for key in keys:
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
    return 0


def count_tokens(samples_path: Path) -> tuple[int, int]:
    prompt = generated = 0
    with open(samples_path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                prompt += _first(row, PROMPT_KEYS)
                generated += _first(row, GENERATED_KEYS)
    return prompt, generated


def add_task_tokens(profiler, result: dict, samples_path: Path | None, seconds: float) -> dict:
    """Add one task's token counts to ``profiler``; return the task's own throughput figures."""
    if samples_path is None or not Path(samples_path).is_file():
        return {}
    cached = (result.get("requests") or {}).get("from_cache", 0)
    if cached:  # answers read back from the request cache took no compute: a rate over them would be fiction
        return {"seconds": round(seconds, 3), "from_cache": cached, "rates": "not measured (answers from the request cache)"}
    prompt, generated = count_tokens(Path(samples_path))
    timing = result.get("timing") or {}
    figures = {"seconds": round(seconds, 3), "prompt_tokens": prompt, "generated_tokens": generated}
    if generated == 0:
        profiler.add_tokens("prefill", prompt, seconds)
        figures["prefill_tokens_per_s"] = round(prompt / seconds, 1) if seconds > 0 else None
    elif timing.get("prefill_s") is not None and timing.get("decode_s") is not None:
        profiler.add_tokens("prefill", prompt, timing["prefill_s"])
        profiler.add_tokens("decode", generated, timing["decode_s"])
        figures["prefill_tokens_per_s"] = round(prompt / timing["prefill_s"], 1) if timing["prefill_s"] > 0 else None
        figures["decode_tokens_per_s"] = round(generated / timing["decode_s"], 1) if timing["decode_s"] > 0 else None
    else:
        profiler.add_tokens("decode", generated, seconds)
        profiler.tokens["decode"]["includes_prefill"] = True
        figures["decode_tokens_per_s"] = round(generated / seconds, 1) if seconds > 0 else None
        figures["includes_prefill"] = True
    return figures
