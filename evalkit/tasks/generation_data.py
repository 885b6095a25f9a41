"""Read generation samples (input text, reference text) from JSON, JSONL, CSV or a hub dataset.

Every problem is reported with the file and the row (0-based index in the file, plus the line for
JSONL/CSV) so the user can fix the data; nothing is skipped silently, since a silently dropped row
would make two models' scores incomparable.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from evalkit.cache import sha256_file, sha256_text
from evalkit.errors import EvalkitError
from evalkit.tasks.generation_spec import GenerationSpec


@dataclass(frozen=True)
class Sample:
    index: int  # row number in the source (0-based), stable across runs
    input: str
    reference: str


@dataclass
class GenerationSamples:
    samples: list[Sample]
    source: str  # file path or "hub:org/name (config, split)"
    data_sha256: str | None  # the file's hash (None for hub datasets: see revision)
    revision: str | None = None

    def samples_sha256(self) -> str:
        """One hash over (index, input, reference) of every sample: equal hashes mean the same samples in the same order."""
        return sha256_text(json.dumps([[s.index, s.input, s.reference] for s in self.samples], ensure_ascii=False))


def load_samples(spec: GenerationSpec, limit: int | None = None) -> GenerationSamples:
    data = spec.data
    assert data is not None
    if data.path is not None and data.path.is_file():
        rows = _read_file(data.path, data.format)
        where, digest, revision = str(data.path), sha256_file(data.path), None
    elif data.hub:
        rows, where, revision = _read_hub(spec)
        digest = None
    else:
        raise EvalkitError(f"{data.path}: data file for task {spec.name} does not exist; "
                           f"fix data.path in {spec.path} (see tasks/data/PROVENANCE.md)")
    stop = len(rows) if data.stop is None else min(data.stop, len(rows))
    if data.start >= stop:
        raise EvalkitError(f"{where}: data.slice [{data.start}, {data.stop}] of {spec.path} selects no rows "
                           f"(the source has {len(rows)}); fix the slice")
    samples = [_sample(spec, where, i, rows[i]) for i in range(data.start, stop)]
    if limit is not None:
        samples = samples[:limit]  # first N of the fixed slice: every model sees the same ones
    return GenerationSamples(samples, where, digest, revision)


def _sample(spec: GenerationSpec, where: str, index: int, located: tuple[str, dict]) -> Sample:
    data = spec.data
    return _row(spec, where, index, located, data.input, data.reference, data.separator, "data.input/data.reference")


def _row(spec: GenerationSpec, where: str, index: int, located: tuple[str, dict], inputs: tuple[str, ...],
         reference_column: str, separator: str, fields: str) -> Sample:
    line, row = located
    at = f"{where} row {index}{line}"
    if not isinstance(row, dict):
        raise EvalkitError(f"{at}: expected an object with columns, found {type(row).__name__}; fix the row")
    for column in (*inputs, reference_column):
        if column not in row:
            raise EvalkitError(f"{at}: no column {column!r} (columns: {', '.join(map(str, row)) or 'none'}); "
                               f"fix the row or {fields} in {spec.path}")
    parts = []
    for column in inputs:
        value = row[column]
        if value is not None and not isinstance(value, (str, int, float)):
            raise EvalkitError(f"{at}: column {column!r} is a {type(value).__name__}, not text; fix the row")
        if value is not None and str(value).strip():
            parts.append(str(value))
    reference = row[reference_column]
    if reference is None or not isinstance(reference, (str, int, float)) or not str(reference).strip():
        raise EvalkitError(f"{at}: empty reference in column {reference_column!r}; fill it in or drop the row")
    if not parts:
        raise EvalkitError(f"{at}: empty input (columns {', '.join(inputs)}); fill it in or drop the row")
    return Sample(index, separator.join(parts), str(reference))


def load_exemplars(spec: GenerationSpec, k: int) -> tuple[list[Sample], str]:
    """The first ``k`` rows of the spec's few-shot file in file order (lm-evaluation-harness' ``first_n``),
    their targets with every ``fewshot.strip`` match deleted; and the file's hash."""
    source = spec.fewshot
    assert source is not None
    if not source.path.is_file():
        raise EvalkitError(f"{source.path}: few-shot file for task {spec.name} does not exist; "
                           f"fix fewshot.path in {spec.path}")
    rows = _read_file(source.path, source.format)
    if len(rows) < k:
        raise EvalkitError(f"{source.path}: {len(rows)} exemplars, fewer than the {k} asked for; lower --num-fewshot "
                           f"(or fewshot.num_fewshot in {spec.path})")
    exemplars = []
    for index in range(k):
        row = _row(spec, str(source.path), index, rows[index], source.input, source.target, "\n",
                   "fewshot.input/fewshot.target")
        target = row.reference
        for pattern in source.strip:
            target = re.sub(pattern, "", target)
        exemplars.append(Sample(index, row.input, target))
    return exemplars, sha256_file(source.path)


def _read_file(path: Path, fmt: str) -> list[tuple[str, dict]]:
    """Rows with a location suffix (" (line N)" for line-based formats) for error messages."""
    try:
        if fmt == "json":
            return _read_json(path)
        if fmt == "jsonl":
            return _read_jsonl(path)
        return _read_csv(path)
    except UnicodeDecodeError as exc:
        raise EvalkitError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save the file as UTF-8") from None
    except OSError as exc:
        raise EvalkitError(f"{path}: cannot read ({exc.strerror})") from None


def _read_json(path: Path) -> list[tuple[str, dict]]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EvalkitError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                           "fix the file, or set data.format: jsonl for one object per line") from None
    if not isinstance(content, list):
        raise EvalkitError(f"{path}: expected a JSON list of objects (one per sample), found {type(content).__name__}")
    return [("", row) for row in content]


def _read_jsonl(path: Path) -> list[tuple[str, dict]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append((f" (line {number})", json.loads(line.rstrip("\r\n"))))
            except json.JSONDecodeError as exc:
                raise EvalkitError(f"{path} row {len(rows)} (line {number}): not valid JSON ({exc.msg} at column {exc.colno}); "
                                   "fix that line") from None
    return rows


def _read_csv(path: Path) -> list[tuple[str, dict]]:
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, strict=True)
        try:
            if not reader.fieldnames:
                raise EvalkitError(f"{path}: empty file (no header row); the first row must name the columns")
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise EvalkitError(f"{path} row {len(rows)} (line {reader.line_num}): expected "
                                       f"{len(reader.fieldnames)} fields; fix the row (quote fields that contain commas)")
                rows.append((f" (line {reader.line_num})", row))
        except csv.Error as exc:
            raise EvalkitError(f"{path} row {len(rows)} (line {reader.line_num}): malformed CSV ({exc}); fix its quoting") from None
    return rows


class _HubRows:
    """Rows of a hub dataset, decoded only when indexed (the test splits run to 11k articles)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[str, dict]:
        return "", self.dataset[index]


@contextmanager
def _quiet_hub_retries():
    """huggingface_hub logs each retry against an unreachable host as a warning (a dozen lines over ~20 s);
    the outcome is reported as one line instead."""
    logger = logging.getLogger("huggingface_hub")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def _read_hub(spec: GenerationSpec):
    """A hub dataset (or a local dataset directory) through ``datasets.load_dataset``.

    Offline (HF_HUB_OFFLINE=1) ``datasets`` still serves a copy from its local cache, so the load is
    always attempted; whatever fails becomes one line saying the data is not available here.
    """
    hub = spec.data.hub
    name, split = hub.get("name"), hub.get("split", "test")
    local_dir = spec.path.parent / hub["path"]  # a saved dataset folder next to the spec also works
    source = str(local_dir.resolve()) if local_dir.is_dir() else hub["path"]
    where = f"hub:{hub['path']}" + (f" ({name}, {split})" if name else f" ({split})")
    if not local_dir.is_dir():
        from evalkit.hub import hub_offline

        hub_offline()  # unreachable: offline mode on before datasets' first request (no minute of retries)
    try:
        import datasets

        with _quiet_hub_retries():
            dataset = datasets.load_dataset(source, name, split=split, revision=hub.get("revision"))
    except Exception as exc:  # network, offline mode, auth, missing config or split: all mean "not available here"
        first = str(exc).splitlines()[0] if str(exc) else ""
        reason = f"{type(exc).__name__}: {first}"
        if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
            reason = f"offline (HF_HUB_OFFLINE, or the hub cannot be reached) and not in the local datasets cache; {reason}"
        local = f"no file at {spec.data.path} and " if spec.data.path is not None else ""
        raise EvalkitError(f"{spec.name}: data is not available offline: {local}the hub dataset {where} could not be "
                           f"read ({reason}); run online, or download it and point data.path in {spec.path} at a "
                           "JSON/JSONL/CSV copy") from None
    return _HubRows(dataset), where, hub.get("revision")
