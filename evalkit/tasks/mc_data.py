"""Read multiple-choice questions (question, options, answer) from the files a spec names.

A spec has 2 to 26 option columns, named by their labels (A-D by default); a question's empty trailing
options are dropped, so the number of options may vary per question.

Hand-written on top of the csv module rather than pandas so that every problem can be reported
with its file and line number, which is what a user needs to fix a broken benchmark file.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.tasks.spec import MultipleChoiceSpec

LETTERS = ("A", "B", "C", "D")  # the default labels (the shipped specs')
FIELDS = ("question", *LETTERS, "answer")


@dataclass(frozen=True)
class Question:
    subject: str
    index: int  # position in its split file (0-based), stable across runs
    question: str
    choices: tuple[str, ...]  # the option texts, trailing empty options dropped
    answer: str | None  # one of ``labels``; None in a split without answers (C-Eval test)
    source: str  # "file:line", for error messages and the per-sample file
    id: str = ""  # the file's id column where the spec names one (C-Eval), else str(index)
    labels: tuple[str, ...] = LETTERS  # one per choice: the spec's first len(choices) labels
    dropped: tuple[str, ...] = ()  # labels of the empty trailing options: their {X} placeholders render ""

    def fields(self) -> dict[str, str]:
        return {"question": self.question, "question_stripped": self.question.strip(),
                **dict(zip(self.labels, self.choices)), **dict.fromkeys(self.dropped, ""), "answer": self.answer}


def is_unlabeled(spec: MultipleChoiceSpec, split: str) -> bool:
    """A split whose answers are not public (``data.unlabeled_splits``): predictions only, no accuracy."""
    return split in (spec.data.get("unlabeled_splits") or ())


def split_file(spec: MultipleChoiceSpec, subject: str, split: str) -> Path:
    pattern, data_dir = spec.data.get("files", "{split}/{subject}.csv"), spec.data.get("dir", ".")
    if not isinstance(pattern, str) or not isinstance(data_dir, str):
        raise EvalkitError(f"{spec.path}: data.dir and data.files must be strings, e.g. files: '{{split}}/{{subject}}.csv'")
    try:
        name = pattern.format(split=split, subject=subject)
    except (KeyError, IndexError, ValueError) as exc:
        raise EvalkitError(f"{spec.path}: data.files {pattern!r} has an unknown placeholder ({exc}); "
                           "use only {split} and {subject}") from None
    path = spec.root / data_dir / name
    # the data dir is the user's choice, but the files under it must stay under it (no '../' escapes)
    if not path.resolve().is_relative_to((spec.root / data_dir).resolve()):
        raise EvalkitError(f"{spec.path}: data.files {pattern!r} points outside data.dir; refused")
    return path


def load_split(spec: MultipleChoiceSpec, subject: str, split: str) -> list[Question]:
    path = split_file(spec, subject, split)
    if path.is_file():
        questions = _read_csv(path, spec, subject, labeled=not is_unlabeled(spec, split))
    elif spec.data.get("hub"):
        questions = _read_hub(spec, subject, split, path, labeled=not is_unlabeled(spec, split))
    else:
        raise EvalkitError(f"{path}: missing data file for {spec.name}/{subject} ({split} split); "
                           "restore the vendored file (see tasks/data/PROVENANCE.md) or fix data.dir in " + str(spec.path))
    if not questions:
        raise EvalkitError(f"{path}: the {split} split of {spec.name}/{subject} has no questions; add rows or drop the subject")
    return questions


def _fields(spec: MultipleChoiceSpec) -> tuple[str, ...]:
    return ("question", *spec.option_labels, "answer")


def _columns(spec: MultipleChoiceSpec):
    """``data.columns`` with its field names as strings (YAML reads a digit label ``1:`` as an int)."""
    columns = spec.data.get("columns", list(_fields(spec)))
    if isinstance(columns, dict):
        return {str(field): name for field, name in columns.items()}
    return [str(field) for field in columns]


def _column_positions(header: list[str] | None, spec: MultipleChoiceSpec, path: Path,
                      labeled: bool) -> list[int | None]:
    """Positions of question, the options, answer and id; None where absent (no answers, no id column)."""
    fields = _fields(spec)
    columns = _columns(spec)
    if isinstance(columns, list):  # header-less files: columns by position
        offset = 1 if spec.data.get("index_column") else 0
        return [offset + columns.index(f) for f in fields] + [None]
    assert header is not None
    needed = [f for f in (*fields, "id") if f in columns and (labeled or f != "answer")]
    missing = [columns[f] for f in needed if columns[f] not in header]
    if missing:
        raise EvalkitError(f"{path}: missing column(s) {', '.join(missing)} (header: {','.join(header)}); "
                           f"fix the header or data.columns in {spec.path}")
    return [header.index(columns[f]) if f in needed else None for f in (*fields, "id")]


def _question(spec: MultipleChoiceSpec, subject: str, index: int, question: str, options: list[str],
              answer: str | None, source: str, ident: str, where: str | None = None) -> Question:
    """One question with its empty trailing options dropped; its answer checked against its own labels.
    ``where``: the row as error messages name it (default ``source``)."""
    where = where or source
    count = len(options)
    while count and not options[count - 1].strip():
        count -= 1
    if count < 2:
        raise EvalkitError(f"{where}: {count} non-empty option(s); a question needs at least two, fix the row")
    labels = spec.option_labels[:count]
    if answer is not None and answer not in labels:
        raise EvalkitError(f"{where}: answer {answer!r} is not one of {', '.join(labels)}; fix the row")
    return Question(subject, index, question, tuple(options[:count]), answer, source, ident,
                    labels, spec.option_labels[count:])


def _read_csv(path: Path, spec: MultipleChoiceSpec, subject: str, labeled: bool = True) -> list[Question]:
    has_header = bool(spec.data.get("header", True))
    questions: list[Question] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None) if has_header else None
            if has_header and header is None:
                raise EvalkitError(f"{path}: empty file (no header); restore the data file")
            positions = _column_positions(header, spec, path, labeled)
            width = len(header) if header is not None else max(p for p in positions if p is not None) + 1
            for row in reader:
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != width:
                    raise EvalkitError(f"{path}:{line}: expected {width} fields, found {len(row)}; "
                                       "fix the row (quote fields that contain commas)")
                question, *options, answer, ident = (None if i is None else row[i] for i in positions)
                answer = answer.strip() if labeled else None
                index = len(questions)
                ident = str(index) if ident is None else ident.strip()
                parsed = _question(spec, subject, index, question, options, answer, f"{path}:{line}", ident)
                if not ident:
                    raise EvalkitError(f"{path}:{line}: empty id; fix the row")
                questions.append(parsed)
            twice = [i for i, n in Counter(q.id for q in questions).items() if n > 1]
            if twice:  # a leaderboard file maps id -> letter: a repeated id would lose a prediction
                raise EvalkitError(f"{path}: id {twice[0]!r} appears more than once; ids must be unique within a file")
    except csv.Error as exc:
        raise EvalkitError(f"{path}:{reader.line_num}: malformed CSV ({exc}); fix the quoting of that row") from None
    except UnicodeDecodeError as exc:
        raise EvalkitError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save the file as UTF-8") from None
    return questions


def _read_hub(spec: MultipleChoiceSpec, subject: str, split: str, local: Path, labeled: bool = True) -> list[Question]:
    """Read a subject from a hub dataset (users online); offline this fails with a clear line."""
    hub = spec.data["hub"]
    name = hub.get("name", "{subject}").format(subject=subject)
    hub_split = hub.get("splits", {}).get(split, split)
    where = f"{hub['path']} ({name}, {hub_split})"
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            import datasets

            rows = datasets.load_dataset(hub["path"], name, split=hub_split)
        except Exception as exc:  # network, auth, missing config: all mean "not available here"
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            columns = _columns(spec)
            names = columns if isinstance(columns, dict) else {f: f for f in _fields(spec)}
            questions = []
            for i, row in enumerate(rows):
                answer = str(row[names["answer"]]).strip() if labeled else None
                ident = str(row[names["id"]]) if "id" in names and names["id"] in row else str(i)
                options = [str(row[names[x]]) for x in spec.option_labels]
                questions.append(_question(spec, subject, i, row[names["question"]], options, answer,
                                           f"{where}#{i}", ident, where=f"{where} row {i}"))
            return questions
    raise EvalkitError(
        f"{spec.name}/{subject} ({split}) is not available offline: no file at {local} and the hub dataset "
        f"{where} could not be read ({reason}); put the files there in the dataset's layout or run online"
    )
