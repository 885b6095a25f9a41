"""Read multiple-choice questions (question, A-D, answer) from the files a spec names.

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

LETTERS = ("A", "B", "C", "D")
FIELDS = ("question", *LETTERS, "answer")


@dataclass(frozen=True)
class Question:
    subject: str
    index: int  # position in its split file (0-based), stable across runs
    question: str
    choices: tuple[str, str, str, str]
    answer: str | None  # "A".."D"; None in a split without answers (C-Eval test)
    source: str  # "file:line", for error messages and the per-sample file
    id: str = ""  # the file's id column where the spec names one (C-Eval), else str(index)

    def fields(self) -> dict[str, str]:
        return {"question": self.question, "question_stripped": self.question.strip(),
                **dict(zip(LETTERS, self.choices)), "answer": self.answer}


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


def _column_positions(header: list[str] | None, spec: MultipleChoiceSpec, path: Path,
                      labeled: bool) -> list[int | None]:
    """Positions of question, A-D, answer and id; None where absent (no answers, no id column)."""
    columns = spec.data.get("columns", list(FIELDS))
    if isinstance(columns, list):  # header-less files: columns by position
        offset = 1 if spec.data.get("index_column") else 0
        return [offset + columns.index(f) for f in FIELDS] + [None]
    assert header is not None
    needed = [f for f in (*FIELDS, "id") if f in columns and (labeled or f != "answer")]
    missing = [columns[f] for f in needed if columns[f] not in header]
    if missing:
        raise EvalkitError(f"{path}: missing column(s) {', '.join(missing)} (header: {','.join(header)}); "
                           f"fix the header or data.columns in {spec.path}")
    return [header.index(columns[f]) if f in needed else None for f in (*FIELDS, "id")]


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
                question, a, b, c, d, answer, ident = (None if i is None else row[i] for i in positions)
                if not labeled:
                    answer = None
                elif (answer := answer.strip()) not in LETTERS:
                    raise EvalkitError(f"{path}:{line}: answer {answer!r} is not one of A, B, C, D; fix the row")
                index = len(questions)
                ident = str(index) if ident is None else ident.strip()
                if not ident:
                    raise EvalkitError(f"{path}:{line}: empty id; fix the row")
                questions.append(Question(subject, index, question, (a, b, c, d), answer, f"{path}:{line}", ident))
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
            columns = spec.data.get("columns", {})
            names = columns if isinstance(columns, dict) else {f: f for f in FIELDS}
            questions = []
            for i, row in enumerate(rows):
                answer = str(row[names["answer"]]).strip() if labeled else None
                if labeled and answer not in LETTERS:
                    raise EvalkitError(f"{where} row {i}: answer {answer!r} is not one of A, B, C, D")
                ident = str(row[names["id"]]) if "id" in names and names["id"] in row else str(i)
                questions.append(Question(subject, i, row[names["question"]],
                                          tuple(str(row[names[x]]) for x in LETTERS), answer, f"{where}#{i}", ident))
            return questions
    raise EvalkitError(
        f"{spec.name}/{subject} ({split}) is not available offline: no file at {local} and the hub dataset "
        f"{where} could not be read ({reason}); put the files there in the dataset's layout or run online"
    )
