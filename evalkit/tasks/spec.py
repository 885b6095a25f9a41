"""Task specs: one YAML file per benchmark in the top-level ``tasks/`` folder.

A spec says where the data lives (relative to the spec file, or a hub dataset), which splits and
subjects exist, how subjects map to categories, and the prompt styles. Each task ``type`` has its
own dataclass (multiple choice here; generation_spec.py, perplexity_spec.py); loading.py reads a YAML file
into the one its ``type`` names.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalkit.cache import sha256_file
from evalkit.errors import EvalkitError


@dataclass(frozen=True)
class Subject:
    key: str
    name: str  # display name put into prompts ("abstract algebra", "农学")
    categories: tuple[str, ...]


@dataclass(frozen=True)
class PromptStyle:
    header: str  # once per prompt, may use {subject}
    example: str  # one question: {question}, {question_stripped}, {options}, and each option by its label ({A}..{D})
    target: str  # the answer appended after ``example``: "{answer}" or " {answer}"
    separator: str = "\n\n"  # after each exemplar
    option: str = "{label}. {text}"  # one line of {options}, per option of the question


# ``labels:`` in a spec: letters (the default), digits, or the spec's own list
LABEL_SETS = {"letters": tuple(string.ascii_uppercase), "digits": tuple("123456789")}
MAX_OPTIONS = 26
RESERVED_FIELDS = ("question", "question_stripped", "options", "answer", "id")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    type: str
    path: Path  # the spec file
    raw: dict = field(repr=False, compare=False)

    @property
    def root(self) -> Path:
        return self.path.parent

    def spec_hash(self) -> str:
        return sha256_file(self.path)


@dataclass(frozen=True)
class MultipleChoiceSpec(TaskSpec):
    language: str = "en"
    data: dict = field(default_factory=dict)
    splits: tuple[str, ...] = ()
    eval_split: str = "test"
    fewshot_split: str = "dev"
    categories: tuple[str, ...] = ()
    subjects: dict[str, Subject] = field(default_factory=dict)
    prompt_styles: dict[str, PromptStyle] = field(default_factory=dict)
    option_labels: tuple[str, ...] = ("A", "B", "C", "D")  # one per option column, in order: the most a question has
    scoring: str = "letters"  # letters: softmax over the labels' next token; cloze: each option's text (cloze.py)
    target_delimiter: str = " "  # cloze: put between the prompt and each option's text (lm-eval's default)

    @classmethod
    def from_dict(cls, raw: dict, path: Path) -> "MultipleChoiceSpec":
        required = ["task", "data", "subjects", "prompt_styles", "eval_split"]
        _require(raw, required, path)
        if not isinstance(raw["subjects"], dict) or not raw["subjects"]:
            raise EvalkitError(f"{path}: 'subjects' must be a non-empty mapping of key -> {{name, categories}}")
        if not isinstance(raw["data"], dict):
            raise EvalkitError(f"{path}: 'data' must be a mapping (dir, files, columns); see docs/new_task_guide.md")
        if not isinstance(raw["prompt_styles"], dict):
            raise EvalkitError(f"{path}: 'prompt_styles' must be a mapping of name -> {{header, example, target}}")
        _string_list(raw.get("categories") or [], "categories", path)
        subjects = {}
        for key, value in raw["subjects"].items():
            if not isinstance(value, dict) or "name" not in value:
                raise EvalkitError(f"{path}: subject {key!r} needs a mapping with 'name' and 'categories'")
            if not isinstance(value["name"], str):
                raise EvalkitError(f"{path}: subjects.{key}.name must be a string; quote it")
            categories = _string_list(value.get("categories") or [], f"subjects.{key}.categories", path)
            subjects[key] = Subject(key, value["name"], tuple(categories))
        scoring, delimiter = scoring_settings(raw, path)
        styles = {}
        for name, value in raw["prompt_styles"].items():
            if not isinstance(value, dict):
                raise EvalkitError(f"{path}: prompt_styles.{name} must be a mapping with header, example, target")
            for part, text in value.items():
                if not isinstance(text, str):  # YAML reads `no` as False: a template must be a quoted string
                    raise EvalkitError(f"{path}: prompt_styles.{name}.{part} must be a string; quote it")
            if scoring == "cloze":
                value = cloze_style(value, delimiter)
            try:
                styles[name] = PromptStyle(**value)
            except TypeError as exc:
                raise EvalkitError(f"{path}: prompt style {name!r}: {exc}") from None
        return cls(
            name=raw["task"], type="multiple_choice", path=path, raw=raw,
            language=raw.get("language", "en"), data=raw["data"],
            splits=tuple(raw.get("splits") or (raw["eval_split"], raw.get("fewshot_split", "dev"))),
            eval_split=raw["eval_split"], fewshot_split=raw.get("fewshot_split", "dev"),
            categories=tuple(raw.get("categories") or ()), subjects=subjects, prompt_styles=styles,
            option_labels=option_labels(raw, path), scoring=scoring, target_delimiter=delimiter,
        )


SCORING = ("letters", "cloze")


def scoring_settings(raw: dict, path: Path) -> tuple[str, str]:
    """``scoring`` (letters, the default, or cloze) and cloze's ``target_delimiter`` (default " ")."""
    scoring = raw.get("scoring", "letters")
    if scoring not in SCORING:
        raise EvalkitError(f"{path}: scoring must be letters or cloze, not {scoring!r}; fix 'scoring'")
    delimiter = raw.get("target_delimiter", " ")
    if not isinstance(delimiter, str):
        raise EvalkitError(f"{path}: target_delimiter must be a string, e.g. \" \"; quote it")
    if "target_delimiter" in raw and scoring != "cloze":
        raise EvalkitError(f"{path}: target_delimiter applies to scoring: cloze only; drop it or set scoring: cloze")
    return scoring, delimiter


def cloze_style(value: dict, delimiter: str) -> dict:
    """A cloze prompt style's ``target`` writes an exemplar's answer, ``{answer}`` being the answer's text;
    without one it is target_delimiter + the text, as lm-evaluation-harness writes it."""
    escaped = delimiter.replace("{", "{{").replace("}", "}}")  # a literal delimiter inside a format template
    return {"target": escaped + "{answer}", **value}


def option_labels(raw: dict, path: Path) -> tuple[str, ...]:
    """The labels of the spec's option columns: the ``data.columns`` entries named by a label, which must be
    the first labels in order (A, B, C: no gap). Without ``data.columns``: the first four labels (A-D), or
    every label of a ``labels:`` list."""
    value = raw.get("labels", "letters")
    if isinstance(value, str) and value in LABEL_SETS:
        labels = LABEL_SETS[value]
    elif isinstance(value, list) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        labels = tuple(str(v).strip() for v in value)
        if not 2 <= len(labels) <= MAX_OPTIONS or len(set(labels)) != len(labels) or not all(labels) \
                or set(labels) & set(RESERVED_FIELDS):
            raise EvalkitError(f"{path}: labels must be 2 to {MAX_OPTIONS} distinct, non-empty labels other than "
                               f"{', '.join(RESERVED_FIELDS)}, e.g. labels: [A, B, C, D, E]")
    else:
        raise EvalkitError(f"{path}: labels must be letters, digits or a list such as [A, B, C, D, E]; fix 'labels'")
    columns = raw["data"].get("columns")
    if columns is None:
        return labels if isinstance(value, list) else labels[:4]
    if not isinstance(columns, (dict, list)):
        raise EvalkitError(f"{path}: data.columns must be a mapping (field: header name) or a list (fields by position)")
    named = [str(c) for c in columns]  # a mapping's keys, or a list's entries; YAML reads `1:` as an int
    options = tuple(c for c in named if c in labels)
    if len(options) < 2 or options != labels[:len(options)]:
        raise EvalkitError(f"{path}: data.columns names the options {', '.join(options) or 'none'}; name at least two, "
                           f"the first labels in order ({', '.join(labels[:max(len(options), 2)])}), or set 'labels'")
    return options


def _require(raw: dict, keys: list[str], path: Path) -> None:
    missing = [k for k in keys if k not in raw]
    if missing:
        raise EvalkitError(f"{path}: missing key(s) {', '.join(missing)}; see docs/new_task_guide.md")


def _string_list(value: Any, key: str, path: Path) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EvalkitError(f"{path}: '{key}' must be a list of strings, e.g. [STEM]")
    return value


def as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]
