"""``--backend fake``: deterministic answers without a model, for fast tests of evaluators, the CLI, the
request cache and the gate. Never evidence that a real backend works.

Every answer is a function of the request and ``--model`` (plus ``--backend-arg seed=N``) only: letter
"logits" and per-token NLLs come from SHA-256, a generation picks words of its prompt. So two runs of
the same command give identical numbers at any batch size, and two ``--model`` names are two "models".
It is also the smallest complete backend: docs/new_backend.md walks through it.
"""

from __future__ import annotations

import hashlib
import math
import time

from pydantic import Field

from evalkit.backends.base import Backend, BackendOptions, CacheOpener
from evalkit.backends.outputs import (ChoiceScore, ClozeScore, Generation, best_letter, clean_generation,
                                      generation_timing, letter_probabilities, options_key)

CONTEXT = 4096  # "tokens" are UTF-8 bytes here


class FakeOptions(BackendOptions):
    seed: int = Field(0, ge=0, description="another seed gives other answers: another fake model")


def _unit(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class FakeBackend(Backend):
    name = "fake"
    task_types = ("multiple_choice", "generation", "perplexity")
    Options = FakeOptions

    def __init__(self, model: str, options: FakeOptions, *, request_cache: CacheOpener | None = None):
        super().__init__(request_cache=request_cache)
        self.model, self.options = model, options

    @classmethod
    def load(cls, model: str, options: FakeOptions, *, request_cache: CacheOpener | None = None) -> "FakeBackend":
        return cls(model, options, request_cache=request_cache)

    def model_record(self, name: str) -> dict:
        digest = hashlib.sha256(f"{self.model}|{self.options.seed}".encode()).hexdigest()
        return {"name": name, "kind": "fake", "source": f"fake:{self.model}", "weights_sha256": digest,
                "dtype": None, "device": "cpu", "context_length": CONTEXT}

    def describe(self) -> dict:
        return {"name": self.name, "seed": self.options.seed}

    def cache_namespace(self) -> dict:
        from evalkit.store.identity import model_key

        return {"model": model_key(self.model_record(self.model)), "backend": self.name}

    def rolling_window(self, window: int, stride: int) -> tuple[int, int]:
        window = min(window, CONTEXT)
        return window, min(stride, window)

    def _batches(self, count: int, batch_size) -> list[list[int]]:
        size = 8 if batch_size == "auto" else int(batch_size)
        return [list(range(start, min(start + size, count))) for start in range(0, count, size)]

    def _through_cache(self, kind: str, payloads: list[dict], batch_size, compute) -> list:
        """Answers in input order, batch by batch through the request cache, as real backends batch."""
        from evalkit.backends.request_cache import through_memo

        return through_memo(self.memo(kind, payloads), len(payloads), self._batches(len(payloads), batch_size),
                            lambda batch: [compute(payloads[i]) for i in batch])

    def score_choices(self, requests, targets, config, label):
        seed = self.options.seed

        def probabilities(payload: dict) -> list[float]:
            own = targets[:payload.get("options", len(targets))]  # the question's own labels only
            return letter_probabilities([4 * _unit(self.model, seed, payload["prompt"], t) for t in own])

        payloads = [{"prompt": r.prompt, "targets": list(targets), **options_key(r, targets)} for r in requests]
        rows = self._through_cache("multiple_choice", payloads, config.batch_size, probabilities)
        return [ChoiceScore(r, p, best_letter(p, r.labels), len(r.prompt.encode("utf-8")), False)
                for r, p in zip(requests, rows)]

    def score_cloze(self, requests, config, label):
        seed = self.options.seed

        def loglikelihoods(payload: dict) -> dict:
            # a continuation's "log-likelihood" grows more negative with its length, as a real model's does
            values = [-len(c.encode("utf-8")) * (0.5 + _unit(self.model, seed, payload["prompt"], c))
                      for c in payload["continuations"]]
            return {"loglikelihoods": values, "greedy": [False] * len(values)}

        payloads = [{"prompt": r.prompt, "continuations": list(r.continuations)} for r in requests]
        rows = self._through_cache("cloze", payloads, config.batch_size, loglikelihoods)
        return [ClozeScore(r, row["loglikelihoods"], row["greedy"], len(r.prompt.encode("utf-8")), False)
                for r, row in zip(requests, rows)]

    def generate(self, texts, *, chat, max_new_tokens, stop, config, label):
        started = time.perf_counter()

        def continuation(payload: dict) -> list:
            words = payload["text"].split() or ["..."]
            length = 1 + int(_unit(self.model, self.options.seed, payload["text"]) * 24)
            picked = [words[int(_unit(self.model, payload["text"], i) * len(words))] for i in range(length)]
            finish = "length" if length > max_new_tokens else "eos"
            text, finish = clean_generation(" ".join(picked[:max_new_tokens]), stop, finish)
            return [text, min(length, max_new_tokens), finish]

        payloads = [{"text": t, "chat": chat, "max_new_tokens": max_new_tokens, "stop": list(stop)} for t in texts]
        rows = self._through_cache("generation", payloads, config.batch_size, continuation)
        generations = [Generation(text, len(t.encode("utf-8")), new, finish, False, [], t)
                       for (text, new, finish), t in zip(rows, texts)]
        return generations, generation_timing(time.perf_counter() - started, generations, batch_size=config.batch_size)

    def loglikelihood_rolling(self, documents, window, stride, config):
        from evalkit.evaluators.perplexity import too_short, window_ranges

        rows = []
        for i, doc in enumerate(documents):
            ids = list(doc.text.encode("utf-8"))
            if len(ids) < 2:
                raise too_short(doc)
            sums, computed = [], 0
            for begin, end, first in window_ranges(len(ids), window, stride):
                nll = [1 + 4 * _unit(self.model, self.options.seed, doc.text, j) for j in range(first, end)]
                sums.append((math.fsum(nll), len(nll)))
                computed += end - begin
            nll_sum, predicted = math.fsum(s for s, _ in sums), sum(n for _, n in sums)
            rows.append({"index": i, "source": doc.source, "source_index": doc.index, "chars": len(doc.text),
                         "document_tokens": len(ids), "prompt_tokens": computed, "predicted_tokens": predicted,
                         "nll_sum": nll_sum, "perplexity": math.exp(nll_sum / predicted),
                         "first_window_perplexity": math.exp(sums[0][0] / sums[0][1])})
        return rows
