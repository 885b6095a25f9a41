"""``--backend hf``: transformers in process. The modules beside this one are its engine (prefix reuse,
shared-prefix attention, length buckets, the in-place KV cache); this class adapts it to the contract."""

from __future__ import annotations

from evalkit.backends.base import BackendOptions, CacheOpener, InProcessBackend
from evalkit.models.loader import LoadedModel, load_model


class HFBackend(InProcessBackend):
    name = "hf"
    task_types = ("multiple_choice", "generation", "perplexity")
    Options = BackendOptions

    def __init__(self, lm: LoadedModel, *, request_cache: CacheOpener | None = None):
        super().__init__(request_cache=request_cache)
        self.lm = lm

    @classmethod
    def check_model(cls, model: str) -> None:
        from evalkit.models.loader import check_hub_model

        check_hub_model(model)  # a hub id offline fails in ~2 s, before tasks are read or models loaded

    @classmethod
    def load(cls, model: str, options: BackendOptions, *, request_cache: CacheOpener | None = None) -> "HFBackend":
        return cls(load_model(model, device=options.device, dtype=options.dtype,
                              trust_remote_code=options.trust_remote_code), request_cache=request_cache)

    def model_record(self, name: str) -> dict:
        return {**super().model_record(name), "linear_kernel": self.lm.linear_kernel}

    def cache_namespace(self) -> dict:
        """What, besides the request, decides an answer here: the weights, and the arithmetic they run in."""
        from evalkit.store.identity import model_key

        return {"model": model_key(self.lm.identity), "backend": self.name, "dtype": self.lm.dtype,
                "device": self.lm.device.split(":")[0], "linear_kernel": self.lm.linear_kernel}

    def describe(self) -> dict:
        from importlib import metadata

        return {"name": self.name, "transformers": metadata.version("transformers"), "torch": metadata.version("torch")}

    def rolling_window(self, window: int, stride: int) -> tuple[int, int]:
        from evalkit.backends.hf.perplexity import rolling_window

        return rolling_window(self.lm, window, stride)

    def score_choices(self, requests, targets, config, label):
        from evalkit.backends.hf.multiple_choice import score_multiple_choice

        common = {"targets": targets, "truncation": config.truncation, "context": self.lm.context_length,
                  "full_prompt": config.full_prompt}
        from evalkit.backends.outputs import options_key

        memo = self.memo("multiple_choice", [{"prompt": r.prompt, "chat": r.chat, **common, **options_key(r, targets)}
                                             for r in requests])
        return score_multiple_choice(self.lm, requests, targets, config.batch_size, config.truncation, label=label,
                                     progress=config.progress, reuse_prefix=not config.full_prompt, memo=memo)

    def score_cloze(self, requests, config, label):
        from evalkit.backends.hf.cloze import score_cloze

        common = {"truncation": config.truncation, "context": self.lm.context_length, "full_prompt": config.full_prompt}
        memo = self.memo("cloze", [{"prompt": r.prompt, "continuations": list(r.continuations), **common}
                                   for r in requests])
        return score_cloze(self.lm, requests, config.batch_size, config.truncation, label=label,
                           progress=config.progress, reuse_prefix=not config.full_prompt, memo=memo)

    def generate(self, texts, *, chat, max_new_tokens, stop, config, label):
        from evalkit.backends.hf.generation import generate, render_prompt, tokenize_prompts

        prompts = [render_prompt(self.lm.tokenizer, text, chat) for text in texts]
        sequences, truncated = tokenize_prompts(self.lm, prompts, chat, max_new_tokens, config.truncation, label)
        memo = self.memo("generation", [{"prompt_ids": ids, "max_new_tokens": max_new_tokens, "stop": list(stop),
                                         "decoding": "greedy"} for ids in sequences])
        generations, timing = generate(self.lm, sequences, max_new_tokens, stop, config.batch_size, label=label,
                                       progress=config.progress, truncated=truncated, memo=memo)
        for generation, prompt in zip(generations, prompts):
            generation.prompt = prompt
        return generations, timing

    def loglikelihood_rolling(self, documents, window, stride, config):
        from evalkit.backends.hf.perplexity import perplexity_rows

        return perplexity_rows(self.lm, documents, window, stride, progress=config.progress)
