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

Exact-match tasks (``tasks/gsm8k.yaml``) add a prompt template, few-shot exemplars and a ``scoring``
block (its steps: evalkit/metrics/exact_match.py; the walk-through: docs/new_task_guide.md)::

    prompt: "Question: {input}\\nAnswer:"  # {input}: the sample's input; default "{input}"
    chat_template: false                  # plain prompts even when the model has a chat template
    fewshot:
      path: data/gsm8k/train.jsonl        # exemplars: the first k rows in file order
      input: question                     # default: data.input
      target: answer                      # default: data.reference
      num_fewshot: 8                      # k when --num-fewshot is not given
      strip: ["<<[^>]*>>"]                # regexes deleted from exemplar targets
      separator: "\\n\\n"                 # between exemplars and before the question
      target_delimiter: " "               # between an exemplar's prompt and its target
    scoring: {metric: exact_match, extract: [...], reference_extract: [...], match: numeric}

``scoring: {metric: chrf}`` (or ``chrf++``) keeps BLEU-4 / ROUGE and adds sacrebleu's corpus chrF (the headline)
and each sample's sentence chrF.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.metrics.exact_match import SCORING_METRICS, ExactMatchScoring
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
class FewshotSource:
    path: Path  # absolute
    format: str
    input: tuple[str, ...]
    target: str
    num_fewshot: int
    strip: tuple[str, ...] = ()
    separator: str = "\n\n"
    target_delimiter: str = " "


@dataclass(frozen=True)
class GenerationSpec(TaskSpec):
    language: str = "en"
    data: GenerationData | None = None
    instruction: str = ""
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 256
    sacrebleu_tokenize: str | None = None
    prompt: str = "{input}"
    chat_template: bool = True  # False: plain prompts (a few-shot completion prompt reads badly as one chat turn)
    fewshot: FewshotSource | None = None
    scoring: ExactMatchScoring | None = None  # None: BLEU-4 / ROUGE
    chrf: str | None = None  # "chrf" or "chrf++": corpus chrF reported besides BLEU-4 / ROUGE

    @property
    def metric(self) -> str:
        return "exact_match" if self.scoring is not None else self.chrf or "bleu_rouge"

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
        prompt = raw.get("prompt", "{input}")
        if not isinstance(prompt, str) or "{input}" not in prompt:
            raise EvalkitError(f"{path}: 'prompt' must be a string holding {{input}} (where the sample goes)")
        chat_template = raw.get("chat_template", True)
        if not isinstance(chat_template, bool):
            raise EvalkitError(f"{path}: 'chat_template' must be true or false")
        inputs = tuple(str(c) for c in as_list(data["input"]))
        return cls(
            name=str(raw["task"]), type="generation", path=path, raw=raw,
            language=str(raw.get("language", "en")),
            data=GenerationData(file, fmt, inputs, str(data["reference"]),
                                start, stop, str(data.get("separator", "\n")), hub),
            instruction=str(raw.get("instruction") or ""), stop=stops, max_new_tokens=max_new,
            sacrebleu_tokenize=raw.get("sacrebleu_tokenize"), prompt=prompt, chat_template=chat_template,
            fewshot=_fewshot(raw.get("fewshot"), inputs, str(data["reference"]), path),
            scoring=_scoring(raw.get("scoring"), path),
            chrf=_chrf(raw.get("scoring")),
        )


def _fewshot(raw, inputs: tuple[str, ...], reference: str, path: Path) -> FewshotSource | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str) or not raw["path"]:
        raise EvalkitError(f"{path}: 'fewshot' needs a 'path' (the JSON/JSONL/CSV file the exemplars come from)")
    file = (path.parent / raw["path"]).resolve()
    fmt = str(raw.get("format") or file.suffix.lstrip(".").lower())
    if fmt not in FORMATS:
        raise EvalkitError(f"{path}: fewshot.format {fmt!r} is not one of {', '.join(FORMATS)}; set fewshot.format")
    k = raw.get("num_fewshot", 0)
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise EvalkitError(f"{path}: fewshot.num_fewshot must be a non-negative integer (the default k)")
    strip = raw.get("strip") or []
    if not isinstance(strip, list) or not all(isinstance(p, str) and p for p in strip):
        raise EvalkitError(f"{path}: fewshot.strip must be a list of non-empty regular expressions")
    for pattern in strip:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise EvalkitError(f"{path}: fewshot.strip {pattern!r} is not a valid regular expression ({exc})") from None
    texts = {key: raw.get(key, default) for key, default in (("separator", "\n\n"), ("target_delimiter", " "))}
    if not all(isinstance(v, str) for v in texts.values()):
        raise EvalkitError(f"{path}: fewshot.separator and fewshot.target_delimiter must be strings")
    columns = tuple(str(c) for c in as_list(raw["input"])) if raw.get("input") else inputs
    return FewshotSource(file, fmt, columns, str(raw.get("target") or reference), k, tuple(strip), **texts)


def _scoring(raw, path: Path) -> ExactMatchScoring | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise EvalkitError(f"{path}: 'scoring' must be a mapping with metric: {' or '.join(SCORING_METRICS)}")
    metric = raw.get("metric", "exact_match")
    if metric not in SCORING_METRICS:
        raise EvalkitError(f"{path}: scoring.metric {metric!r} is not one of {', '.join(SCORING_METRICS)}")
    if metric in ("bleu_rouge", "chrf", "chrf++"):
        extra = sorted(k for k in raw if k != "metric")
        if extra:
            raise EvalkitError(f"{path}: scoring {', '.join(extra)} apply to metric exact_match only; drop them")
        return None
    return ExactMatchScoring.from_dict(raw, path)


def _chrf(raw) -> str | None:
    metric = raw.get("metric") if isinstance(raw, dict) else None
    return metric if metric in ("chrf", "chrf++") else None


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

