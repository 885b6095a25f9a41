"""What an evaluator asks of a model, and nothing about how it is computed.

Three questions, one per task type:

* ``score_choices``: the four answer-letter probabilities at the position after each prompt
  (multiple choice);
* ``generate``: a greedy continuation of each prompt, cut at stop strings (generation tasks);
* ``loglikelihood_rolling``: summed token log-likelihoods over documents (perplexity);

plus ``model_record()`` / ``describe()``, what produced the numbers, for the results file.
Batching, caching and prefix reuse are the backend's business: ``hf`` computes in process with
transformers, ``openai`` asks an OpenAI-compatible server, ``vllm`` runs vLLM's engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from evalkit.evaluators.base import RunConfig
    from evalkit.tasks.perplexity_spec import Document
    from evalkit.requests import MultipleChoiceRequest
    from evalkit.scoring.generation import Generation
    from evalkit.scoring.multiple_choice import ChoiceScore

TASK_TYPES = ("multiple_choice", "generation", "perplexity")


@dataclass
class BackendOptions:
    """Everything ``evalkit run`` passes to a backend; each backend reads the fields it knows."""

    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    base_url: str | None = None  # openai
    api_key_env: str = "OPENAI_API_KEY"  # openai: the variable holding the key (never the key itself)
    concurrency: int = 8  # openai: requests in flight
    timeout: float = 600.0  # openai: seconds per request
    max_retries: int = 5  # openai: retries on 429/5xx/timeouts, with exponential backoff
    mc_mode: str = "logprobs"  # openai: logprobs (exact) or generate (parse a letter from text)
    top_logprobs: int = 20  # openai: log-probabilities asked per position
    tokenizer: str | None = None  # openai: local tokenizer (alias/dir) for chat-template MC and logit_bias
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific settings (vllm engine arguments)


class Backend(Protocol):
    name: str
    task_types: tuple[str, ...]  # which of TASK_TYPES it can answer

    @property
    def tokenizer(self) -> Any | None:
        """The model's tokenizer where evalkit has it locally (chat-template rendering), else None."""

    @property
    def chat_available(self) -> bool:
        """Whether generation prompts can be wrapped in the model's chat template."""

    def model_record(self, name: str) -> dict:
        """The results file's ``model`` block: identity (kind, source, weight hashes), dtype, device, context."""

    def describe(self) -> dict:
        """The results file's ``backend`` block: name, versions and settings that affect the numbers."""

    def score_choices(self, requests: list[MultipleChoiceRequest], targets: list[str], config: RunConfig,
                      label: str) -> list[ChoiceScore]: ...

    def generate(self, texts: list[str], *, chat: bool, max_new_tokens: int, stop: tuple[str, ...],
                 config: RunConfig, label: str) -> tuple[list[Generation], dict]: ...

    def loglikelihood_rolling(self, documents: list[Document], window: int, stride: int,
                              config: RunConfig) -> tuple[dict, list[dict]]: ...


def clean_generation(text: str, stop: tuple[str, ...], finish: str) -> tuple[str, str]:
    """The text evalkit scores: cut at the first stop string, a half-decoded last character dropped, stripped.

    Every backend applies this one rule so their texts compare exactly. A continuation cut at
    ``max_new_tokens`` can end inside a multi-byte character, which decodes to U+FFFD.
    """
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    if cut >= 0:
        text, finish = text[:cut], "stop"
    elif finish == "length":
        text = text.rstrip("\ufffd")
    return text.strip(), finish
