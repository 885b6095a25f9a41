"""``--backend hf``: transformers in process. The scoring code in evalkit/scoring/ is this backend's engine
(prefix reuse, shared-prefix attention, length buckets); this module only adapts it to the interface."""

from __future__ import annotations

from evalkit.backends.base import BackendOptions
from evalkit.models.loader import LoadedModel, load_model


class HFBackend:
    name = "hf"
    task_types = ("multiple_choice", "generation", "perplexity")

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
        return {"name": name, **lm.identity, "dtype": lm.dtype, "device": lm.device, "context_length": lm.context_length}

    def describe(self) -> dict:
        from importlib import metadata

        return {"name": self.name, "transformers": metadata.version("transformers"), "torch": metadata.version("torch")}

    def score_choices(self, requests, targets, config, label):
        from evalkit.scoring.multiple_choice import score_multiple_choice

        return score_multiple_choice(self.lm, requests, targets, config.batch_size, config.truncation, label=label,
                                     progress=config.progress, reuse_prefix=not config.full_prompt)

    def generate(self, texts, *, chat, max_new_tokens, stop, config, label):
        from evalkit.scoring.generation import generate, render_prompt, tokenize_prompts

        prompts = [render_prompt(self.lm.tokenizer, text, chat) for text in texts]
        sequences, truncated = tokenize_prompts(self.lm, prompts, chat, max_new_tokens, config.truncation, label)
        generations, timing = generate(self.lm, sequences, max_new_tokens, stop, config.batch_size, label=label,
                                       progress=config.progress, truncated=truncated)
        for generation, prompt in zip(generations, prompts):
            generation.prompt = prompt
        return generations, timing

    def loglikelihood_rolling(self, documents, window, stride, config):
        from evalkit.profile.perplexity import perplexity

        return perplexity(self.lm, documents, window, stride, progress=config.progress)
