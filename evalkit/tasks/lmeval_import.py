"""Turn an lm-evaluation-harness task file into an evalkit task spec plus its data (``evalkit tasks import-lmeval``,
and ``evalkit run --tasks file.yaml`` on such a file). lmeval_source.py reads the file and the documents.

Each document's prompt text and target are rendered once, here, with lm-eval's own templates, so the evalkit spec
only has to join them the way lm-eval 0.4.13 does (``ConfigurableTask.fewshot_context``, ``build_qa_turn``):
``description + (text + target_delimiter + target + fewshot_delimiter) x k + text``, the scored continuation
being ``target_delimiter + choice``. Those joins are evalkit's own few-shot machinery, so ``--num-fewshot``
works on an imported task as on any other:

- multiple_choice whose choices are one fixed list of short labels (``["A","B","C","D"]``) -> evalkit's letter
  multiple choice; text choices -> multiple choice with ``scoring: cloze`` (each option text as a continuation);
- generate_until -> a generation spec (stop strings, max_new_tokens, few-shot, exact match or text metrics);
- loglikelihood_rolling -> a perplexity spec over the rendered documents.

Anything outside that subset stops with one line naming the file and the key.
"""

from __future__ import annotations

import csv
import io
import json
import os
import string
from pathlib import Path

import yaml

from evalkit.errors import EvalkitError
from evalkit.tasks import lmeval_metrics
from evalkit.tasks.lmeval_source import (IGNORED_KEYS, Renderer, find_hook, load_documents, looks_like_lmeval,
                                         read_task_file)

OUTPUT_TYPES = ("multiple_choice", "generate_until", "loglikelihood_rolling")
READ_KEYS = {"task", "output_type", "dataset_path", "dataset_name", "dataset_kwargs", "test_split", "fewshot_split",
             "num_fewshot", "fewshot_config", "doc_to_text", "doc_to_target", "doc_to_choice", "description",
             "target_delimiter", "fewshot_delimiter", "generation_kwargs", "metric_list", "filter_list", "repeats",
             "should_decontaminate", "doc_to_decontamination_query"}
FEWSHOT_CONFIG_KEYS = {"sampler"}
FEWSHOT_POOL = 32  # first_n takes the first k exemplars, and --num-fewshot accepts at most 32
MAX_LABEL_CHARS = 2  # "A", "B", "10": one token each in every tokenizer evalkit ships; longer choices are text


def is_lmeval_file(path: Path) -> bool:
    """An lm-eval task file (no evalkit ``type``; lm-eval keys or an ``include:``), judged from its own keys."""
    try:
        raw = read_task_file(path, include=False)
    except EvalkitError:
        return False  # let the evalkit loader report what is wrong with it
    return looks_like_lmeval(raw) or (isinstance(raw, dict) and "type" not in raw and "include" in raw)


class LmevalTask:
    """One lm-eval task file, checked against the subset and rendered into evalkit rows."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.raw = read_task_file(self.path)
        hook = find_hook(self.raw, "")
        if hook:
            raise EvalkitError(f"{self.path}: {hook[0]} is a !function hook ({hook[1]}), Python code outside the subset "
                               "evalkit reads; write it as a Jinja2 template or a column name")
        unknown = sorted(str(k) for k in self.raw if k not in READ_KEYS | IGNORED_KEYS)
        if unknown:
            raise EvalkitError(f"{self.path}: {unknown[0]} is outside the lm-eval subset evalkit reads "
                               "(see docs/new_task_guide.md, lm-evaluation-harness task files)")
        self.output_type = self.raw.get("output_type", "generate_until")
        if self.output_type not in OUTPUT_TYPES:
            raise EvalkitError(f"{self.path}: output_type {self.output_type!r} is outside the subset; "
                               f"use {', '.join(OUTPUT_TYPES)}")
        self.name = str(self.raw.get("task") or self.path.stem)
        if not self.name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise EvalkitError(f"{self.path}: task {self.name!r}: use letters, digits, '_', '-' or '.' in the name")
        self.k = self._int("num_fewshot", 0)
        if self._int("repeats", 1) != 1:
            raise EvalkitError(f"{self.path}: repeats other than 1 is outside the subset (evalkit decodes greedily once)")
        if self.raw.get("should_decontaminate"):
            raise EvalkitError(f"{self.path}: should_decontaminate is outside the subset; drop it")
        self.target_delimiter = self._text("target_delimiter", " ")
        self.fewshot_delimiter = self._text("fewshot_delimiter", "\n\n")
        self.test_split = self._text("test_split", None)
        self.fewshot_split = self.raw.get("fewshot_split")
        self._check_fewshot_config()
        self.metrics = lmeval_metrics.read(self.path, self.raw, self.output_type)

    def _int(self, key: str, default: int) -> int:
        value = self.raw.get(key, default)
        value = default if value is None else value
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise EvalkitError(f"{self.path}: {key} must be a non-negative integer")
        return value

    def _text(self, key: str, default):
        value = self.raw.get(key, default)
        if not isinstance(value, str) or (default is None and not value):
            raise EvalkitError(f"{self.path}: {key} must be a string" + (" (the split scored)" if default is None else ""))
        return value

    def _check_fewshot_config(self) -> None:
        config = self.raw.get("fewshot_config")
        if config is not None:
            if not isinstance(config, dict):
                raise EvalkitError(f"{self.path}: fewshot_config must be a mapping, e.g. {{sampler: first_n}}")
            extra = sorted(str(k) for k in config if k not in FEWSHOT_CONFIG_KEYS)
            if extra:
                raise EvalkitError(f"{self.path}: fewshot_config.{extra[0]} is outside the subset; "
                                   "evalkit reads fewshot_config.sampler: first_n")
        sampler = (config or {}).get("sampler", "default")
        uses_fewshot = self.k > 0 and self.output_type != "loglikelihood_rolling"
        if (uses_fewshot or config is not None) and sampler != "first_n":
            # lm-eval's default sampler draws at random per document: not one fixed prompt prefix
            raise EvalkitError(f"{self.path}: fewshot_config.sampler {sampler!r} is outside the subset; "
                               "set fewshot_config: {sampler: first_n} (the first k exemplars in order)")
        if uses_fewshot and not isinstance(self.fewshot_split, str):
            raise EvalkitError(f"{self.path}: num_fewshot {self.k} needs fewshot_split (the split exemplars come from)")
        if isinstance(self.fewshot_split, str) and self.fewshot_split == self.test_split and self.k:
            raise EvalkitError(f"{self.path}: fewshot_split is the test_split; lm-eval then drops each scored document "
                               "from its own exemplars, outside the subset; use another split")

    def documents(self) -> tuple[dict[str, list[dict]], Renderer]:
        splits = [self.test_split] + ([self.fewshot_split] if isinstance(self.fewshot_split, str) else [])
        docs = load_documents(self.path, self.raw, list(dict.fromkeys(splits)))
        features = list(docs[self.test_split][0]) if docs[self.test_split] else []
        if not docs[self.test_split]:
            raise EvalkitError(f"{self.path}: test_split {self.test_split} has no documents")
        return docs, Renderer(self.path, features)

    def description(self, docs: list[dict], render: Renderer) -> str:
        """lm-eval renders ``description`` per document; evalkit's header is one text, so it must not vary."""
        template = self.raw.get("description") or ""
        if not isinstance(template, str):
            raise EvalkitError(f"{self.path}: description must be a string")
        texts = {render.render(template, doc, "description") for doc in docs} if template else {""}
        if len(texts) > 1:
            raise EvalkitError(f"{self.path}: description varies per document; outside the subset (one header per task)")
        return texts.pop()


def load_lmeval_spec(path: Path):
    """The evalkit spec of an lm-eval task file, imported into the user cache (rewritten each run, so edits to
    the file or its data count), and the file's num_fewshot where evalkit's default would differ (multiple
    choice: 0)."""
    from evalkit.cache import cache_dir, sha256_text
    from evalkit.tasks.loading import load_spec

    out = cache_dir() / "lmeval" / sha256_text(str(Path(path).resolve()))[:16]
    spec_path, default_fewshot = import_task(path, out)
    return load_spec(spec_path), default_fewshot


def import_task(path: Path, out_dir: Path) -> tuple[Path, int | None]:
    """Write ``out_dir/<task>.yaml`` and its data under ``out_dir/data/<task>/``; return the spec's path and,
    for multiple choice, the file's num_fewshot (evalkit's multiple choice takes k from --num-fewshot)."""
    task = LmevalTask(path)
    docs, render = task.documents()
    writer = {"multiple_choice": _multiple_choice, "generate_until": _generation,
              "loglikelihood_rolling": _perplexity}[task.output_type]
    spec, files = writer(task, docs, render)
    data_dir = f"data/{task.name}"
    for name, text in files.items():
        _write(out_dir / data_dir / name, text)
    header = (f"# Imported by `evalkit tasks import-lmeval` from the lm-evaluation-harness task file {path.name}\n"
              f"# (output_type {task.output_type}); its documents are rendered into {data_dir}/.\n")
    if task.output_type == "multiple_choice" and task.k:
        header += f"# The file's num_fewshot is {task.k}: run it with --num-fewshot {task.k}.\n"
    spec_path = out_dir / f"{task.name}.yaml"
    _write(spec_path, header + yaml.dump(_relative(spec, data_dir), Dumper=_SpecDumper, allow_unicode=True,
                                          sort_keys=False, width=1 << 16))
    return spec_path, task.k if task.output_type == "multiple_choice" else None


class _SpecDumper(yaml.SafeDumper):
    """Texts with newlines or edge spaces double-quoted on one line ("...\\n\\n"): plain YAML folds them unreadably."""


def _represent_text(dumper, text: str):
    quoted = "\n" in text or text != text.strip() or text == ""
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"' if quoted else None)


_SpecDumper.add_representer(str, _represent_text)


def _relative(spec: dict, data_dir: str) -> dict:
    text = json.dumps(spec).replace("@DATA@", data_dir)
    return json.loads(text)


def _write(path: Path, text: str) -> None:
    """Atomically, so two runs of the same task file never read a half-written spec."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _texts(task: LmevalTask, render: Renderer, doc: dict) -> str:
    text = render.text(task.raw.get("doc_to_text"), doc, "doc_to_text")
    if text.isdigit() and task.raw.get("doc_to_choice") is not None:
        raise EvalkitError(f"{task.path}: doc_to_text gives a choice index (lm-eval's multiple-input form); "
                           "outside the subset")
    return text


def _multiple_choice(task: LmevalTask, docs, render: Renderer):
    if task.raw.get("doc_to_choice") is None:
        raise EvalkitError(f"{task.path}: output_type multiple_choice needs doc_to_choice")
    rows = {}
    all_choices = []
    for split, out in ((task.test_split, "test"), (task.fewshot_split, "fewshot")):
        if split not in docs:
            continue
        rows[out] = []
        for doc in docs[split][:FEWSHOT_POOL] if out == "fewshot" else docs[split]:
            choices = render.choices(task.raw["doc_to_choice"], doc, "doc_to_choice")
            target = render.target(task.raw.get("doc_to_target"), doc, "doc_to_target", True)
            if isinstance(target, str):
                if target not in choices:
                    raise EvalkitError(f"{task.path}: doc_to_target gives {target!r}, not one of the choices "
                                       f"{choices[:6]}; fix doc_to_target")
                target = choices.index(target)
            if not isinstance(target, int) or not 0 <= target < len(choices):
                raise EvalkitError(f"{task.path}: doc_to_target gives {target!r}, not a choice index below {len(choices)}")
            rows[out].append((_texts(task, render, doc), choices, target))
            all_choices.append(tuple(choices))
    description = task.description(docs[task.test_split], render)
    letter = len(set(all_choices)) == 1 and _are_labels(all_choices[0])
    labels = list(all_choices[0]) if letter else list(string.ascii_uppercase)
    width = max(len(c) for c in all_choices)
    if width > len(string.ascii_uppercase) or width < 2:
        raise EvalkitError(f"{task.path}: doc_to_choice gives {width} choices; evalkit scores 2 to 26")
    labels = labels[:width]
    files = {}
    for out, items in rows.items():
        buffer = io.StringIO()
        table = csv.writer(buffer, lineterminator="\n")
        table.writerow(["question", *labels, "answer"])
        for text, choices, target in items:
            table.writerow([text, *choices, *[""] * (width - len(choices)), labels[target]])
        files[f"{out}/{task.name}.csv"] = buffer.getvalue()
    style = {"header": _literal(description), "example": "{question}",
             "target": _literal(task.target_delimiter) + "{answer}", "separator": task.fewshot_delimiter}
    spec = {"task": task.name, "type": "multiple_choice", "language": "en",
            "description": f"lm-eval task {task.name} ({task.path.name})",
            "data": {"dir": "@DATA@", "files": "{split}/{subject}.csv", "header": True,
                     "columns": {"question": "question", **{label: label for label in labels}, "answer": "answer"}},
            "labels": labels, "splits": list(rows), "eval_split": "test", "fewshot_split": "fewshot",
            "subjects": {task.name: {"name": task.name, "categories": []}},
            # the file's own prompt, under both style names, so either --prompt-style gives it
            "prompt_styles": {"llamafactory": style, "lm_eval": style}}
    if not letter:
        _cloze(task, spec)
    if task.metrics.get("mc") == "acc_norm" and letter and len({len(c) for c in labels}) > 1:
        raise EvalkitError(f"{task.path}: acc_norm over labels of different lengths is outside the subset; use acc")
    return spec, files


def _are_labels(choices: tuple[str, ...]) -> bool:
    return (2 <= len(choices) <= 26 and len(set(choices)) == len(choices)
            and all(0 < len(c) <= MAX_LABEL_CHARS and c.isalnum() for c in choices))


def _cloze(task: LmevalTask, spec: dict) -> None:
    """Text choices are scored as continuations (``scoring: cloze``), where this evalkit reads that key."""
    from evalkit.tasks.loading import KNOWN_KEYS

    if "scoring" not in KNOWN_KEYS["multiple_choice"][""]:
        raise EvalkitError(f"{task.path}: multiple_choice with text choices needs cloze scoring, which this evalkit "
                           "does not have yet; use letter choices (doc_to_choice: [A, B, C, D])")
    spec["scoring"] = "cloze"
    spec["target_delimiter"] = task.target_delimiter


def _literal(text: str) -> str:
    """A text used as a str.format template (header, target) must keep its braces."""
    return text.replace("{", "{{").replace("}", "}}")


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _pairs(task: LmevalTask, docs: list[dict], render: Renderer) -> list[dict]:
    rows = []
    for doc in docs:
        target = render.target(task.raw.get("doc_to_target"), doc, "doc_to_target", False)
        if not isinstance(target, str):
            raise EvalkitError(f"{task.path}: doc_to_target gives a {type(target).__name__}; generate_until needs "
                               "the reference text")
        rows.append({"input": _texts(task, render, doc), "target": target})
    return rows


def _generation(task: LmevalTask, docs, render: Renderer):
    files = {"test.jsonl": _jsonl(_pairs(task, docs[task.test_split], render))}
    spec = {"task": task.name, "type": "generation", "language": "en",
            "description": f"lm-eval task {task.name} ({task.path.name})",
            "data": {"path": "@DATA@/test.jsonl", "format": "jsonl", "input": "input", "reference": "target"},
            "instruction": task.description(docs[task.test_split], render), "prompt": "{input}",
            "chat_template": False,  # lm-eval's default: a plain completion prompt
            "sacrebleu_tokenize": "13a",  # lm-eval's bleu and chrf use sacrebleu's defaults
            **lmeval_metrics.generation_keys(task.path, task.raw, task.fewshot_delimiter, task.metrics)}
    if isinstance(task.fewshot_split, str) and task.fewshot_split in docs:
        files["fewshot.jsonl"] = _jsonl(_pairs(task, docs[task.fewshot_split][:FEWSHOT_POOL], render))
        spec["fewshot"] = {"path": "@DATA@/fewshot.jsonl", "format": "jsonl", "input": "input", "target": "target",
                           "num_fewshot": task.k, "separator": task.fewshot_delimiter,
                           "target_delimiter": task.target_delimiter}
    return spec, files


def _perplexity(task: LmevalTask, docs, render: Renderer):
    # lm-eval's rolling loglikelihood scores doc_to_target (the document), not doc_to_text
    texts = []
    for doc in docs[task.test_split]:
        text = render.target(task.raw.get("doc_to_target"), doc, "doc_to_target", False)
        if not isinstance(text, str):
            raise EvalkitError(f"{task.path}: doc_to_target gives a {type(text).__name__}; loglikelihood_rolling needs text")
        texts.append({"text": text})
    spec = {"task": task.name, "type": "perplexity",
            "description": f"lm-eval task {task.name} ({task.path.name})",
            "documents": [{"file": "@DATA@/test.jsonl", "format": "jsonl", "field": "text"}]}
    return spec, {"test.jsonl": _jsonl(texts)}
