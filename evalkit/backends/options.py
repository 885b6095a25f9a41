"""Backend options on the command line: each backend's ``Options`` model is the only list of its settings.

A field may name a flag of its own (``json_schema_extra={"flag": "--base-url"}``): ``evalkit run`` adds
those flags from the registry, so existing flags keep working and a new backend adds its flags by
declaring them. Every field is also reachable as ``--backend-arg key=value``. Flags of another
backend, unknown keys and bad values stop the run with one line, before the model loads.
"""

from __future__ import annotations

import argparse
import json
import typing
from typing import Any

from pydantic import ValidationError

from evalkit.backends.base import BackendOptions
from evalkit.errors import EvalkitError

COMMON = tuple(BackendOptions.model_fields)  # device, dtype, trust_remote_code: run's own flags


def flag_fields(options: type[BackendOptions]) -> dict[str, tuple[str, Any]]:
    """field name -> (flag, field info) for the backend-specific fields that declare a flag."""
    found = {}
    for name, info in options.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if name not in COMMON and extra.get("flag"):
            found[name] = (str(extra["flag"]), info)
    return found


Owners = dict[str, tuple[str, list[str]]]  # field -> (its flag, the backends that take it)


def add_flags(group, backends: dict[str, type]) -> Owners:
    """Add every backend's flags to ``group`` (an absent flag leaves no attribute on the parsed args)."""
    owners: Owners = {}
    for backend_name, cls in backends.items():
        for field, (flag, info) in flag_fields(cls.Options).items():
            if field in owners:  # the same setting in two backends: one flag
                owners[field][1].append(backend_name)
                continue
            owners[field] = (flag, [backend_name])
            extra = info.json_schema_extra
            choices = typing.get_args(info.annotation) if typing.get_origin(info.annotation) is typing.Literal else None
            group.add_argument(flag, dest=field, default=argparse.SUPPRESS, choices=choices,
                               metavar=None if choices else extra.get("metavar", "N"),
                               help=f"{backend_name}: {info.description or field}")
    return owners


def parse_backend_args(items: list[str] | None) -> dict[str, Any]:
    """``--backend-arg key=value`` (repeatable): values read as JSON where they parse (2, 0.8, true), else text."""
    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise EvalkitError(f"--backend-arg {item!r}: use key=value, e.g. --backend-arg max_num_seqs=16")
        try:
            values[key.strip()] = json.loads(text)
        except ValueError:
            values[key.strip()] = text
    return values


def build_options(backend_name: str, cls: type, common: dict, flags: dict, backend_args: dict,
                  owners: Owners) -> BackendOptions:
    """The chosen backend's options from run's common flags, the flags given, and ``--backend-arg``s."""
    for field in flags:
        flag, takers = owners[field]
        if backend_name not in takers:
            owner = " or ".join(f"--backend {name}" for name in takers)
            raise EvalkitError(f"{flag} is an option of {owner}; drop it or add --backend {takers[0]}")
    options_model = cls.Options
    unknown = [key for key in backend_args if key not in options_model.model_fields]
    if unknown:
        known = ", ".join(k for k in options_model.model_fields if k not in COMMON) or "none besides " + ", ".join(COMMON)
        raise EvalkitError(f"--backend-arg {unknown[0]}: not an option of --backend {backend_name}; it takes {known}")
    try:
        return options_model(**common, **flags, **backend_args)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a rule over several fields (e.g. openai needs a base URL): its own sentence
            raise EvalkitError(message) from None
        key = str(error["loc"][0])
        flag = flag_fields(options_model).get(key, (f"--backend-arg {key}",))[0]
        raise EvalkitError(f"{flag}: {message} (--backend {backend_name})") from None

