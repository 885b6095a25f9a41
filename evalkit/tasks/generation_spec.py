"""``type: generation`` task specs: an input column (or several), a reference column, a fixed slice.

Example (``tasks/alpaca_en.yaml``)::

    task: alpaca_en
    type: generation
    language: en
    data:
      path: data/sft/alpaca_en_demo.json   # relative to the spec file; .json, .jsonl or .csv
      input: [instruction, input]          # several columns are joined with "\\n", empty ones skipped
      reference: output
      slice: [900, null]                   # rows [900:] of the file, fixed so runs compare the same samples
      hub: {path: org/name, name: null, split: test, revision: null}   # optional: used when the file is not
                                           # there; path may also be a dataset folder next to the spec
    instruction: ""                        # optional text put before every input
    stop: []                               # optional stop strings
    max_new_tokens: 256                    # default for --max-new-tokens
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.tasks.spec import TaskSpec, _require, as_list

FORMATS = ("json", "jsonl", "csv")


@dataclass(frozen=True)
class GenerationData:
    path: Path | None  # local file (absolute), or None for hub-only tasks
    format: str
    input: tuple[str, ...]
    reference: str
    start: int = 0
    stop: int | None = None
    separator: str = "\n"
    hub: dict | None = None  # {path, name, split}


@dataclass(frozen=True)
class GenerationSpec(TaskSpec):
    language: str = "en"
    data: GenerationData | None = None
    instruction: str = ""
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 256
    sacrebleu_tokenize: str | None = None

    @classmethod
    def from_dict(cls, raw: dict, path: Path) -> "GenerationSpec":
        _require(raw, ["task", "data"], path)
        data = raw["data"]
        if not isinstance(data, dict):
            raise EvalkitError(f"{path}: 'data' must be a mapping with input, reference and path or hub")
        missing = [k for k in ("input", "reference") if not data.get(k)]
        if missing:
            raise EvalkitError(f"{path}: data needs {' and '.join(missing)} (the column names); see docs/generation.md")
        if not data.get("path") and not data.get("hub"):
            raise EvalkitError(f"{path}: data needs a 'path' (JSON/JSONL/CSV file) or a 'hub' dataset")
        file = (path.parent / data["path"]).resolve() if data.get("path") else None
        fmt = str(data.get("format") or (file.suffix.lstrip(".").lower() if file else "hub"))
        if file is not None and fmt not in FORMATS:
            raise EvalkitError(f"{path}: data.format {fmt!r} is not one of {', '.join(FORMATS)}; set data.format")
        hub = data.get("hub")
        if hub is not None and (not isinstance(hub, dict) or not hub.get("path")):
            raise EvalkitError(f"{path}: data.hub needs at least 'path' (e.g. EdinburghNLP/xsum) and 'split'")
        start, stop = _slice(data.get("slice"), path)
        max_new = raw.get("max_new_tokens", 256)
        if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1:
            raise EvalkitError(f"{path}: max_new_tokens must be a positive integer")
        raw_stop = raw.get("stop") or []
        if not isinstance(raw_stop, (str, list)) or not all(isinstance(s, str) for s in as_list(raw_stop)):
            raise EvalkitError(f"{path}: 'stop' must be a string or a list of strings")
        stops = tuple(as_list(raw_stop))
        if any(not s for s in stops):
            raise EvalkitError(f"{path}: stop strings must not be empty")
        return cls(
            name=str(raw["task"]), type="generation", path=path, raw=raw,
            language=str(raw.get("language", "en")),
            data=GenerationData(file, fmt, tuple(str(c) for c in as_list(data["input"])), str(data["reference"]),
                                start, stop, str(data.get("separator", "\n")), hub),
            instruction=str(raw.get("instruction") or ""), stop=stops, max_new_tokens=max_new,
            sacrebleu_tokenize=raw.get("sacrebleu_tokenize"),
        )


def _slice(value, path: Path) -> tuple[int, int | None]:
    if value is None:
        return 0, None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise EvalkitError(f"{path}: data.slice must be [start, stop] (stop may be null), e.g. [900, null]")
    start, stop = value
    if start is None:
        start = 0
    if not isinstance(start, int) or start < 0 or (stop is not None and (not isinstance(stop, int) or stop <= start)):
        raise EvalkitError(f"{path}: data.slice {value!r}: use non-negative row numbers with start < stop")
    return start, stop

