"""``--backend hf``: transformers in process. The scoring code in evalkit/scoring/ is this backend's engine
(prefix reuse, shared-prefix attention, length buckets); this module only adapts it to the interface."""

from __future__ import annotations

from evalkit.backends.base import BackendOptions
from evalkit.backends.request_cache import BatchMemo
from evalkit.models.loader import LoadedModel, load_model


class HFBackend:
    name = "hf"
    task_types = ("multiple_choice", "generation", "perplexity")
    request_cache = None  # set by evalkit run (backends/request_cache.py); None: compute everything

    def __init__(self, lm: LoadedModel):
        self.lm = lm

    @classmethod
    def load(cls, model: str, options: BackendOptions) -> "HFBackend":
        return cls(load_model(model, device=options.device, dtype=options.dtype,
                              trust_remote_code=options.trust_remote_code))

    @property
    def tokenizer(self):
        return self.lm.tokenizer

    @property
    def chat_available(self) -> bool:
        from evalkit.scoring.generation import has_chat_template

        return has_chat_template(self.lm.tokenizer)

    def model_record(self, name: str) -> dict:
        lm = self.lm
        return {"name": name, **lm.identity, "dtype": lm.dtype, "device": lm.device, "context_length": lm.context_length,
                "linear_kernel": lm.linear_kernel}

    def cache_namespace(self) -> dict:
        """What, besides the request, decides an answer here: the weights, and the arithmetic they run in."""
        from evalkit.store.identity import model_key

        return {"model": model_key(self.lm.identity), "backend": self.name, "dtype": self.lm.dtype,
                "device": self.lm.device.split(":")[0], "linear_kernel": self.lm.linear_kernel}

    def _memo(self, kind: str, payloads: list[dict]) -> BatchMemo | None:
        if self.request_cache is None:
            return None
        return BatchMemo(self.request_cache, kind, [self.request_cache.key(kind, p) for p in payloads])

    def describe(self) -> dict:
        from importlib import metadata

        return {"name": self.name, "transformers": metadata.version("transformers"), "torch": metadata.version("torch")}

    def score_choices(self, requests, targets, config, label):
        from evalkit.scoring.multiple_choice import score_multiple_choice

        common = {"targets": targets, "truncation": config.truncation, "context": self.lm.context_length,
                  "full_prompt": config.full_prompt}
        memo = self._memo("multiple_choice", [{"prompt": r.prompt, "chat": r.chat, **common} for r in requests])
        return score_multiple_choice(self.lm, requests, targets, config.batch_size, config.truncation, label=label,
                                     progress=config.progress, reuse_prefix=not config.full_prompt, memo=memo)

    def generate(self, texts, *, chat, max_new_tokens, stop, config, label):
        from evalkit.scoring.generation import generate, render_prompt, tokenize_prompts

        prompts = [render_prompt(self.lm.tokenizer, text, chat) for text in texts]
        sequences, truncated = tokenize_prompts(self.lm, prompts, chat, max_new_tokens, config.truncation, label)
        memo = self._memo("generation", [{"prompt_ids": ids, "max_new_tokens": max_new_tokens, "stop": list(stop),
                                          "decoding": "greedy"} for ids in sequences])
        generations, timing = generate(self.lm, sequences, max_new_tokens, stop, config.batch_size, label=label,
                                       progress=config.progress, truncated=truncated, memo=memo)
        for generation, prompt in zip(generations, prompts):
            generation.prompt = prompt
        return generations, timing

    def loglikelihood_rolling(self, documents, window, stride, config):
        from evalkit.profile.perplexity import perplexity

        return perplexity(self.lm, documents, window, stride, progress=config.progress)
