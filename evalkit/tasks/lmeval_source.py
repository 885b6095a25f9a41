"""Read an lm-evaluation-harness task file (its ``include:`` chain merged) and the documents it names, and
render its Jinja2 templates the way lm-eval does (``lm_eval.utils.apply_template``: StrictUndefined, trailing
newlines kept, the ``regex_replace`` filter). lmeval_import.py turns the result into an evalkit spec."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any

import jinja2
import yaml

from evalkit.errors import EvalkitError
from evalkit.yaml_files import MAX_BYTES, _BoundedLoader

# lm-eval keys that only label or group a task: read and ignored
IGNORED_KEYS = {"task_alias", "tag", "group", "metadata", "training_split", "validation_split"}


class FunctionHook(str):
    """The value of a ``!function module.name`` tag: Python code in the task folder, outside the subset."""


class _LmevalLoader(_BoundedLoader):
    pass


_LmevalLoader.add_constructor("!function", lambda loader, node: FunctionHook(loader.construct_scalar(node)))


def read_task_file(path: Path, seen: tuple[Path, ...] = (), include: bool = True) -> dict:
    """The task's keys with its ``include:`` files merged under them (the including file wins), as lm-eval;
    ``include=False``: the file's own keys only."""
    path = Path(path)
    if path.resolve() in seen:
        raise EvalkitError(f"{path}: include loop ({' -> '.join(map(str, seen))}); fix 'include'")
    try:
        text = path.read_bytes()[: MAX_BYTES + 1].decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalkitError(f"{path}: cannot read as UTF-8 text ({exc}); check the path") from None
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise EvalkitError(f"{path}: more than {MAX_BYTES} bytes of YAML; fix the task file")
    loader = _LmevalLoader(text)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise EvalkitError(f"{path}: not valid YAML ({first}); fix the task file") from None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise EvalkitError(f"{path}: an lm-eval task file must be a YAML mapping")
    if not include:
        return raw
    include = raw.pop("include", None)
    if include is None:
        return raw
    if not isinstance(include, str):
        raise EvalkitError(f"{path}: include must be one file name (relative to {path.parent})")
    base = read_task_file(path.parent / include, (*seen, path.resolve()))
    # lm-eval resolves nested includes the same way: each relative to the file that names it
    return {**base, **raw}


def looks_like_lmeval(raw: Any) -> bool:
    """An lm-eval task file: no evalkit ``type``, and lm-eval's own keys."""
    return isinstance(raw, dict) and "type" not in raw and bool({"output_type", "doc_to_text", "dataset_path"} & set(raw))


def find_hook(value: Any, where: str) -> tuple[str, str] | None:
    """(key, function) of the first ``!function`` anywhere in ``value``."""
    if isinstance(value, FunctionHook):
        return where, str(value)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = find_hook(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def _regex_replace(text, pattern, replacement, count: int = 0):
    return re.sub(pattern, replacement, text, count=count)


_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_ENV.filters["regex_replace"] = _regex_replace


class Renderer:
    """lm-eval's doc_to_text / doc_to_target / doc_to_choice: a column name, else a Jinja2 template."""

    def __init__(self, path: Path, features: list[str]):
        self.path, self.features, self._compiled = path, features, {}

    def render(self, template: str, doc: dict, key: str) -> str:
        if template not in self._compiled:
            try:
                self._compiled[template] = _ENV.from_string(template)
            except jinja2.TemplateSyntaxError as exc:
                raise EvalkitError(f"{self.path}: {key} is not a valid Jinja2 template ({exc}); fix it") from None
        try:
            return self._compiled[template].render(**doc)
        except Exception as exc:  # a missing column, a failing expression: the template's fault, named once
            raise EvalkitError(f"{self.path}: {key} {template!r} fails on a document ({type(exc).__name__}: {exc}); "
                               f"the columns are {', '.join(self.features)}") from None

    def text(self, template, doc: dict, key: str) -> str:
        if not isinstance(template, str):
            raise EvalkitError(f"{self.path}: {key} must be a column name or a Jinja2 template string")
        value = doc[template] if template in self.features else self.render(template, doc, key)
        if not isinstance(value, str):
            raise EvalkitError(f"{self.path}: {key} {template!r} gives a {type(value).__name__}, not text; "
                               "render it with a template, e.g. '{{" + template + "}}'")
        return value

    def target(self, template, doc: dict, key: str, has_choices: bool):
        """An int (a choice index) or a string, as lm-eval's doc_to_target."""
        if isinstance(template, int) and not isinstance(template, bool):
            return template
        if not isinstance(template, str):
            raise EvalkitError(f"{self.path}: {key} must be a column name, a Jinja2 template or an index")
        if template in self.features:
            return doc[template]
        value = self.render(template, doc, key)
        if value.isdigit() and has_choices:
            return int(value)
        if len(value) >= 2 and value[0] == "[" and value[-1] == "]":
            raise EvalkitError(f"{self.path}: {key} gives a list (several gold answers); outside the subset evalkit "
                               "reads, give one target per document")
        return value

    def choices(self, template, doc: dict, key: str) -> list[str]:
        if isinstance(template, dict):
            template = list(template.values())
        if isinstance(template, list):
            return [str(c) for c in template]
        if not isinstance(template, str):
            raise EvalkitError(f"{self.path}: {key} must be a list of choices, a column name or a template")
        value = doc[template] if template in self.features else self.render(template, doc, key)
        if isinstance(value, str):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise EvalkitError(f"{self.path}: {key} {template!r} does not give a list of choices") from None
        if not isinstance(value, (list, tuple)):
            raise EvalkitError(f"{self.path}: {key} {template!r} gives a {type(value).__name__}, not a list of choices")
        return [str(c) for c in value]


def resolve_data_files(value, task_dir: Path):
    """``data_files`` with each relative path taken from the task file's folder when a file is there (else
    left to ``datasets``, which reads it from the working directory, as lm-eval)."""
    if isinstance(value, dict):
        return {k: resolve_data_files(v, task_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_data_files(v, task_dir) for v in value]
    if isinstance(value, str) and not os.path.isabs(value) and (task_dir / value).exists():
        return str((task_dir / value).resolve())
    return value


def local_files(value) -> list[Path]:
    if isinstance(value, dict):
        return [p for v in value.values() for p in local_files(v)]
    if isinstance(value, list):
        return [p for v in value for p in local_files(v)]
    return [Path(value)] if isinstance(value, str) and Path(value).is_file() else []


PACKAGED = {"json", "csv", "parquet", "text", "arrow"}


def _offline() -> bool:
    """Offline by flag, or the hub unreachable (one probe: a second, not datasets' minute of retries)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return True
    from evalkit.hub import hub_offline

    return hub_offline()


def load_documents(path: Path, raw: dict, splits: list[str]) -> dict[str, list[dict]]:
    """The documents of each split, read with ``datasets.load_dataset`` as lm-eval does (so CSV cells get the
    same pandas types lm-eval's templates see)."""
    source, name = raw.get("dataset_path"), raw.get("dataset_name")
    if not isinstance(source, str) or not source:
        raise EvalkitError(f"{path}: dataset_path is missing; name a hub dataset or json/csv/parquet with "
                           "dataset_kwargs.data_files")
    kwargs = dict(raw.get("dataset_kwargs") or {})
    if "data_files" in kwargs:
        kwargs["data_files"] = resolve_data_files(kwargs["data_files"], path.parent)
    local = source in PACKAGED or Path(source).is_dir()
    if not local and _offline():
        raise EvalkitError(f"{path}: dataset_path {source} is a hub dataset and this run is offline (HF_HUB_OFFLINE, or the hub cannot be reached); "
                           "run online, or use dataset_path: json/csv/parquet with dataset_kwargs.data_files")
    try:
        import datasets

        datasets.disable_progress_bars()  # "Generating test split" bars on stderr for every import
        loaded = datasets.load_dataset(source, name, **kwargs)
    except Exception as exc:  # missing file, bad format, network: one line naming the task file
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise EvalkitError(f"{path}: dataset_path {source} could not be read ({type(exc).__name__}: {first}); "
                           "fix dataset_path / dataset_kwargs") from None
    missing = [s for s in splits if s not in loaded]
    if missing:
        raise EvalkitError(f"{path}: split(s) {', '.join(missing)} not in the dataset (it has {', '.join(loaded)}); "
                           "fix test_split / fewshot_split or the data_files keys")
    return {s: [dict(row) for row in loaded[s]] for s in splits}
