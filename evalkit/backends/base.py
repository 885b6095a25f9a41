"""The backend contract: what an evaluator asks of a model, and nothing about how it is computed.

A backend is one module with a ``Backend`` subclass and one line in ``evalkit/backends/__init__.py``
(docs/new_backend.md walks through it). It declares:

* ``name``, ``task_types`` (a subset of ``TASK_TYPES``) and ``Options``, a pydantic model of its settings
  (unknown keys are refused: ``evalkit run --backend-arg key=value`` reaches them);
* ``load(model, options, request_cache=...)``: a ready backend, or one ``EvalkitError`` line;
* what produced the numbers: ``model_record``, ``describe`` and ``cache_namespace``;
* the questions of the task types it answers: ``score_choices`` (multiple choice; ``score_cloze`` for
  specs with ``scoring: cloze``), ``generate``
  (generation), ``loglikelihood_rolling`` (perplexity). The others answer with one line.

Results come back as the neutral types of ``evalkit/backends/outputs.py``. Batching, prefix reuse and
concurrency are the backend's business; the request cache is handed to it at construction (an opener,
called with ``cache_namespace()`` on first use) and consulted through ``memo``, written once here.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

from evalkit.backends.outputs import ChoiceScore, Generation, clean_generation  # noqa: F401  (re-exported)
from evalkit.errors import EvalkitError

if TYPE_CHECKING:
    from evalkit.backends.request_cache import BatchMemo, RequestCache
    from evalkit.evaluators.base import RunConfig
    from evalkit.backends.outputs import ClozeScore
    from evalkit.requests import ClozeRequest, MultipleChoiceRequest
    from evalkit.tasks.perplexity_spec import Document

TASK_TYPES = ("multiple_choice", "generation", "perplexity")
CacheOpener = Callable[[dict], "RequestCache | None"]  # namespace -> cache (RequestCache.open), None: no cache


class BackendOptions(BaseModel):
    """Settings every backend takes; a backend's ``Options`` subclasses this with its own fields."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False


class Backend(abc.ABC):
    name: ClassVar[str]
    task_types: ClassVar[tuple[str, ...]]  # which of TASK_TYPES it can answer
    Options: ClassVar[type[BackendOptions]] = BackendOptions

    def __init__(self, *, request_cache: CacheOpener | None = None):
        self._cache_opener = request_cache
        self._cache: RequestCache | None = None

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def check_model(cls, model: str) -> None:
        """Fail fast, before tasks are read or weights loaded, on a ``--model`` this backend cannot use."""

    @classmethod
    @abc.abstractmethod
    def load(cls, model: str, options: BackendOptions, *, request_cache: CacheOpener | None = None) -> "Backend":
        """Load ``model`` with ``options`` (an instance of ``cls.Options``); errors are one ``EvalkitError`` line."""

    # -- what produced the numbers ----------------------------------------------------------------------
    @abc.abstractmethod
    def model_record(self, name: str) -> dict:
        """The results file's ``model`` block: identity (kind, source, weight hashes), dtype, device, context."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """The results file's ``backend`` block: name, versions and settings that affect the numbers."""

    @abc.abstractmethod
    def cache_namespace(self) -> dict:
        """What, besides a request, decides its answer (weights, arithmetic, server): part of every cache key."""

    @property
    def tokenizer(self) -> Any | None:
        """The model's tokenizer where evalkit has it locally (chat-template rendering), else None."""
        return None

    @property
    def chat_available(self) -> bool:
        """Whether generation prompts can be wrapped in the model's chat template."""
        return False

    def rolling_window(self, window: int, stride: int) -> tuple[int, int]:
        """The (window, stride) perplexity is computed with: the spec's, bounded by what the model can take."""
        return window, stride

    # -- the questions --------------------------------------------------------------------------------
    def score_choices(self, requests: list[MultipleChoiceRequest], targets: list[str], config: RunConfig,
                      label: str) -> list[ChoiceScore]:
        """Per request, the probabilities of the answer letters ``targets`` at the position after its prompt.

        Returns one ``ChoiceScore`` per request, in input order; the same request always gets the same
        numbers, whatever the batch it is computed in.
        """
        raise self._unsupported("multiple_choice")

    def score_cloze(self, requests: list[ClozeRequest], config: RunConfig, label: str) -> list[ClozeScore]:
        """Per request, the summed log-likelihood of each option's continuation (``request.continuations``) after
        its prompt, the tokens split as lm-evaluation-harness splits them (``backends/cloze_tokens.py``).

        Returns one ``ClozeScore`` per request, in input order; the same request always gets the same
        numbers, whatever the batch it is computed in. Backends without it answer with one line.
        """
        raise EvalkitError(f"--backend {self.name} cannot score multiple choice as cloze (scoring: cloze in the "
                           "task spec); use --backend hf, openai or vllm")

    def generate(self, texts: list[str], *, chat: bool, max_new_tokens: int, stop: tuple[str, ...],
                 config: RunConfig, label: str) -> tuple[list[Generation], dict]:
        """Greedy continuations of ``texts`` (in the model's chat template if ``chat``), cleaned by
        ``clean_generation``, in input order; and a timing record (``outputs.generation_timing``)."""
        raise self._unsupported("generation")

    def loglikelihood_rolling(self, documents: list[Document], window: int, stride: int,
                              config: RunConfig) -> list[dict]:
        """One row per document, in input order, over sliding windows of ``window`` tokens moving ``stride``
        (``evaluators/perplexity.py`` defines the windows and aggregates the rows): at least ``nll_sum``,
        ``predicted_tokens``, ``prompt_tokens``, ``document_tokens`` and ``first_window_perplexity``."""
        raise self._unsupported("perplexity")

    # -- shared glue ----------------------------------------------------------------------------------
    @property
    def request_cache(self) -> RequestCache | None:
        """The request cache for this model, opened on first use; None when the run has none."""
        if self._cache is None and self._cache_opener is not None:
            self._cache = self._cache_opener(self.cache_namespace())
            self._cache_opener = None
        return self._cache

    def memo(self, kind: str, payloads: list[dict]) -> BatchMemo | None:
        """A task's requests (``payloads``: what decides each answer) as cache keys; None without a cache."""
        from evalkit.backends.request_cache import BatchMemo

        cache = self.request_cache
        if cache is None:
            return None
        return BatchMemo(cache, kind, [cache.key(kind, payload) for payload in payloads])

    def _unsupported(self, task_type: str) -> EvalkitError:
        return EvalkitError(f"--backend {self.name} cannot answer {task_type} tasks; it answers "
                            f"{', '.join(self.task_types)}: use --backend hf for this one")


class InProcessBackend(Backend):
    """A backend holding the model's tokenizer, identity and context in process (``self.lm``, a
    ``models.loader.LoadedModel``): hf and vllm. Their prompts are rendered and tokenised alike."""

    lm: Any

    @property
    def tokenizer(self):
        return self.lm.tokenizer

    @property
    def chat_available(self) -> bool:
        from evalkit.backends.hf.generation import has_chat_template

        return has_chat_template(self.lm.tokenizer)

    def model_record(self, name: str) -> dict:
        lm = self.lm
        return {"name": name, **lm.identity, "dtype": lm.dtype, "device": lm.device, "context_length": lm.context_length}
