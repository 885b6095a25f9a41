"""Perplexity of a model on a fixed text set named by a ``type: perplexity`` task spec.

Two numbers, because both are in use and they differ:

* ``perplexity``: corpus level, exp(total NLL / total predicted tokens), each document scored
  with a sliding window (Hugging Face's strided-perplexity recipe): windows of ``window`` tokens
  moving ``stride`` tokens at a time, each token predicted once, with up to ``window - stride``
  tokens of context carried over.
* ``perplexity_llamafactory``: LLaMA-Factory's ``cal_ppl.py`` figure, the mean over documents of
  exp(mean NLL), each document cut to one window (its ``cutoff_len``).

Example spec (``tasks/perplexity_default.yaml``)::

    task: perplexity_default
    type: perplexity
    window: 1024        # tokens per forward pass (capped at the model's context length)
    stride: 512
    documents:
      - {file: data/sft/c4_demo.jsonl, format: jsonl, field: text, select: [290, 298]}
      - {file: data/sft/wiki_demo.txt, format: lines, select: [27, 30], max_chars: 3000}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from evalkit.cache import sha256_file
from evalkit.errors import EvalkitError
from evalkit.tasks.spec import TaskSpec, _require

FORMATS = ("lines", "jsonl", "text")


@dataclass(frozen=True)
class TextSource:
    file: Path
    format: str  # lines: one document per line; jsonl: one per record; text: the whole file
    field: str = "text"
    start: int = 0
    stop: int | None = None
    max_chars: int | None = None  # cut each document (characters, so every tokenizer sees the same text)


@dataclass(frozen=True)
class Document:
    source: str
    index: int  # line / record number in its file
    text: str


@dataclass(frozen=True)
class PerplexitySpec(TaskSpec):
    window: int = 1024
    stride: int = 512
    sources: tuple[TextSource, ...] = ()

    @classmethod
    def from_dict(cls, raw: dict, path: Path) -> "PerplexitySpec":
        _require(raw, ["task", "documents"], path)
        window, stride = int(raw.get("window", 1024)), int(raw.get("stride", 512))
        if not 0 < stride <= window:
            raise EvalkitError(f"{path}: need 0 < stride <= window (got stride {stride}, window {window})")
        sources = []
        for i, entry in enumerate(raw["documents"] or []):
            if not isinstance(entry, dict) or "file" not in entry:
                raise EvalkitError(f"{path}: documents[{i}] needs a 'file' (relative to the spec) and a 'format'")
            fmt = entry.get("format", "lines")
            if fmt not in FORMATS:
                raise EvalkitError(f"{path}: documents[{i}]: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
            select = entry.get("select") or [0, None]
            sources.append(TextSource((path.parent / entry["file"]).resolve(), fmt, entry.get("field", "text"),
                                      int(select[0] or 0), None if select[1] is None else int(select[1]),
                                      entry.get("max_chars")))
        if not sources:
            raise EvalkitError(f"{path}: 'documents' is empty; name at least one text file")
        return cls(name=raw["task"], type="perplexity", path=path, raw=raw, window=window, stride=stride,
                   sources=tuple(sources))


def load_documents(spec: PerplexitySpec) -> tuple[list[Document], dict[str, str]]:
    documents, files = [], {}
    for source in spec.sources:
        if not source.file.is_file():
            raise EvalkitError(f"{spec.path}: text file {source.file} does not exist; fix 'documents' in the spec")
        raw_lines = source.file.read_text(encoding="utf-8")
        if source.format == "text":
            items = [raw_lines]
        else:
            items = raw_lines.splitlines()
        name = source.file.name
        for number in range(len(items))[source.start:source.stop]:
            text = items[number]
            if source.format == "jsonl":
                try:
                    record = json.loads(text)
                    text = record[source.field]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise EvalkitError(f"{source.file}: row {number + 1} is not a JSON object with a {source.field!r} "
                                       "field; fix the row or the spec's 'field'") from None
            if source.max_chars:
                text = text[: source.max_chars]
            if not text.strip():
                raise EvalkitError(f"{source.file}: document at row {number + 1} is empty; change 'select' in {spec.path}")
            documents.append(Document(name, number, text))
        files[str(source.file.relative_to(spec.root)) if source.file.is_relative_to(spec.root) else str(source.file)] = sha256_file(source.file)
    return documents, files


def window_ranges(length: int, window: int, stride: int):
    """Yield (begin, end, first_predicted) per window; tokens [first_predicted, end) are scored in it."""
    previous_end = 0
    for begin in range(0, length, stride):
        end = min(begin + window, length)
        yield begin, end, max(previous_end, begin + 1)  # the document's first token has no context
        previous_end = end
        if end == length:
            break


def document_nll(model, ids: list[int], window: int, stride: int, device: str) -> dict:
    """Summed NLL (nats) over every predicted token of one document, and over its first window."""
    import torch
    import torch.nn.functional as F

    total, predicted, computed = 0.0, 0, 0
    first = None
    with torch.inference_mode():
        for begin, end, first_predicted in window_ranges(len(ids), window, stride):
            inputs = torch.tensor([ids[begin:end]], device=device)
            logits = model(input_ids=inputs).logits[0, :-1].float()
            nll = F.cross_entropy(logits, inputs[0, 1:], reduction="none").double()
            # position j of ``nll`` predicts token begin + j + 1
            kept = nll[first_predicted - begin - 1:]
            total += float(kept.sum())
            predicted += kept.numel()
            computed += end - begin
            if first is None:
                first = (float(kept.sum()), kept.numel())
    return {"nll_sum": total, "predicted_tokens": predicted, "computed_tokens": computed,
            "first_window_nll_sum": first[0], "first_window_tokens": first[1]}


def perplexity(lm, documents: list[Document], window: int, stride: int, progress: bool = False) -> tuple[dict, list[dict]]:
    """Corpus-level and LLaMA-Factory perplexity of ``lm`` on ``documents``; also per-document rows."""
    window = min(window, lm.context_length)
    stride = min(stride, window)
    rows, per_doc = [], []
    total_nll, total_predicted = 0.0, 0
    iterator = documents
    if progress:
        from tqdm import tqdm

        iterator = tqdm(documents, desc="perplexity", unit="doc")
    for i, doc in enumerate(iterator):
        ids = lm.tokenizer(doc.text)["input_ids"]
        if len(ids) < 2:
            raise EvalkitError(f"{doc.source}: document at row {doc.index + 1} has fewer than 2 tokens; it cannot be scored")
        scores = document_nll(lm.model, ids, window, stride, lm.device)
        total_nll += scores["nll_sum"]
        total_predicted += scores["predicted_tokens"]
        first_ppl = math.exp(scores["first_window_nll_sum"] / scores["first_window_tokens"])
        per_doc.append(first_ppl)
        rows.append({"index": i, "source": doc.source, "source_index": doc.index, "chars": len(doc.text),
                     "document_tokens": len(ids), "prompt_tokens": scores["computed_tokens"],
                     "predicted_tokens": scores["predicted_tokens"], "nll_sum": scores["nll_sum"],
                     "perplexity": math.exp(scores["nll_sum"] / scores["predicted_tokens"]),
                     "first_window_perplexity": first_ppl})
    summary = {
        "window": window, "stride": stride, "documents": len(documents),
        "predicted_tokens": total_predicted, "nll_sum": total_nll,
        "perplexity": math.exp(total_nll / total_predicted),
        "perplexity_llamafactory": sum(per_doc) / len(per_doc),
    }
    return summary, rows
