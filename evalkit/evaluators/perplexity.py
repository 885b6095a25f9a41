"""``type: perplexity`` tasks: perplexity on a fixed text set (see evalkit/profile/perplexity.py)."""

from __future__ import annotations

from dataclasses import dataclass

from evalkit.errors import EvalkitError
from evalkit.evaluators.base import RunConfig, register
from evalkit.tasks.perplexity_spec import Document, PerplexitySpec, load_documents
from evalkit.results import RunOutput
from evalkit.tasks.registry import TaskSelection


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
        summary, rows = backend.loglikelihood_rolling(prepared.documents, spec.window, spec.stride, config)
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
