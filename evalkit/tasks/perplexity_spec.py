"""``type: perplexity`` task specs: which text files, which rows, and the sliding window; and the documents
they select. The computation is in evalkit/evaluators/perplexity.py (windows, aggregation) and each backend.

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
