"""``type: perplexity`` tasks: perplexity on a fixed text set, and the arithmetic every backend shares.

Two numbers, because both are in use and they differ:

* ``perplexity``: corpus level, exp(total NLL / total predicted tokens), each document scored
  with a sliding window (Hugging Face's strided-perplexity recipe): windows of ``window`` tokens
  moving ``stride`` tokens at a time, each token predicted once, with up to ``window - stride``
  tokens of context carried over (``window_ranges``).
* ``perplexity_llamafactory``: LLaMA-Factory's ``cal_ppl.py`` figure, the mean over documents of
  exp(mean NLL), each document cut to one window (its ``cutoff_len``).

Backends return one row per document (``Backend.loglikelihood_rolling``); ``perplexity_summary`` turns the
rows into both numbers, so every backend (and data-parallel ranks) aggregate alike. The spec and its
documents: evalkit/tasks/perplexity_spec.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from evalkit.errors import EvalkitError
from evalkit.evaluators.base import RunConfig, register
from evalkit.tasks.perplexity_spec import Document, PerplexitySpec, load_documents
from evalkit.results import RunOutput
from evalkit.tasks.registry import TaskSelection


def window_ranges(length: int, window: int, stride: int):
    """Yield (begin, end, first_predicted) per window; tokens [first_predicted, end) are scored in it."""
    previous_end = 0
    for begin in range(0, length, stride):
        end = min(begin + window, length)
        yield begin, end, max(previous_end, begin + 1)  # the document's first token has no context
        previous_end = end
        if end == length:
            break


def perplexity_summary(rows: list[dict], window: int, stride: int) -> dict:
    """Corpus-level and LLaMA-Factory perplexity from the per-document rows."""
    nll, predicted = 0.0, 0
    for row in rows:  # summed in document order, as one process would
        nll += row["nll_sum"]
        predicted += row["predicted_tokens"]
    return {"window": window, "stride": stride, "documents": len(rows), "predicted_tokens": predicted,
            "nll_sum": nll, "perplexity": math.exp(nll / predicted),
            "perplexity_llamafactory": sum(r["first_window_perplexity"] for r in rows) / len(rows)}


def too_short(doc: Document) -> EvalkitError:
    return EvalkitError(f"{doc.source}: document at row {doc.index + 1} has fewer than 2 tokens; it cannot be scored")


@dataclass
class PreparedText:
    spec: PerplexitySpec
    documents: list[Document]
    data_files: dict[str, str]


@register("perplexity")
class PerplexityEvaluator:
    def prepare(self, selection: TaskSelection, config: RunConfig) -> PreparedText:
        spec: PerplexitySpec = selection.spec  # type: ignore[assignment]
        if config.split:
            raise EvalkitError(f"task {spec.name} reads the documents its spec names ({spec.path}); drop --split")
        documents, files = load_documents(spec)
        if config.limit is not None:
            documents = documents[: config.limit]
        return PreparedText(spec, documents, files)

    def run(self, prepared: PreparedText, backend, config: RunConfig, output: RunOutput) -> dict:
        spec = prepared.spec
        window, stride = backend.rolling_window(spec.window, spec.stride)
        rows = backend.loglikelihood_rolling(prepared.documents, window, stride, config)
        summary = perplexity_summary(rows, window, stride)
        for row in rows:
            row["task"] = spec.name
        samples = output.write_samples(spec.name, rows)
        return {"type": "perplexity", "spec": str(spec.path), "spec_sha256": spec.spec_hash(),
                "data_files": prepared.data_files, "samples_file": samples.name, **summary}

    def table(self, name: str, result: dict) -> list[list]:
        return [
            [name, f"perplexity (corpus, window {result['window']}, stride {result['stride']})",
             result["predicted_tokens"], f"{result['perplexity']:.4f}", "-"],
            [name, "perplexity_llamafactory (mean per document)", result["documents"],
             f"{result['perplexity_llamafactory']:.4f}", "-"],
        ]
