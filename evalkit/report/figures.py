"""Profiler figures of stored runs, flattened for tables: memory, load time, tokens/s, perplexity."""

from __future__ import annotations

# (key, label, better when higher?) in the order reports and leaderboards show them
PROFILE_FIGURES = (
    ("peak_rss_mb", "peak memory (RSS, MB)", False),
    ("cuda_max_allocated_mb", "CUDA max allocated (MB)", False),
    ("model_load_s", "model load (s)", False),
    ("prefill_tokens_per_s", "prefill tokens/s", True),
    ("decode_tokens_per_s", "decode tokens/s", True),
    ("perplexity", "perplexity (corpus, sliding window)", False),
    ("perplexity_llamafactory", "perplexity (LLaMA-Factory per-sample mean)", False),
)
PROFILE_LABELS = {key: label for key, label, _ in PROFILE_FIGURES}


def hardware_text(profile: dict) -> str:
    hw = (profile or {}).get("hardware") or {}
    if not hw:
        return ""
    cores = hw.get("cpu_affinity") or hw.get("cpu_logical_cores")
    text = f"{hw.get('cpu') or 'CPU'} x{cores}"
    return f"{hw['gpu']} ({text})" if hw.get("gpu") else text


def run_figures(profile: dict) -> dict:
    """One run's profile block -> {figure key: value}; absent figures are left out."""
    profile = profile or {}
    memory = profile.get("memory") or {}
    throughput = profile.get("throughput") or {}
    figures = {
        "peak_rss_mb": memory.get("peak_rss_mb"),
        "cuda_max_allocated_mb": memory.get("cuda_max_allocated_mb"),
        "model_load_s": profile.get("model_load_s"),
        "prefill_tokens_per_s": (throughput.get("prefill") or {}).get("tokens_per_s"),
        "decode_tokens_per_s": (throughput.get("decode") or {}).get("tokens_per_s"),
        "train_tokens_per_s": (throughput.get("train") or {}).get("tokens_per_s"),
        "perplexity": profile.get("perplexity"),
        "perplexity_llamafactory": profile.get("perplexity_llamafactory"),
    }
    return {k: v for k, v in figures.items() if v is not None}


def model_figures(runs, profile_run=None, perplexity_result=None) -> dict:
    """Figures for one model: the newest evaluation run's, with perplexity from a perplexity task
    result or, failing that, the newest ``evalkit profile`` run (which also measures decode speed)."""
    figures: dict = {}
    ordered = sorted({r.id: r for r in runs}.values(), key=lambda r: r.id)
    if profile_run is not None:
        figures.update(run_figures(profile_run.profile))
    for run in ordered:  # newest last, so it wins
        if run.kind == "evaluation":
            figures.update(run_figures(run.profile))
    if perplexity_result is not None and perplexity_result.result:
        for key in ("perplexity", "perplexity_llamafactory"):
            if perplexity_result.result.get(key) is not None:
                figures[key] = perplexity_result.result[key]
    source = next((r for r in reversed(ordered) if r.kind == "evaluation"), profile_run)
    figures["hardware"] = hardware_text(source.profile if source is not None else {})
    return figures
