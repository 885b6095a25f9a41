"""The recipe options with their defaults, for ``evalkit train --help``: generated from the Recipe
dataclass (names, defaults and the comment on each field's line), so the help never drifts from the code."""

from __future__ import annotations

import dataclasses
import inspect
import re

from evalkit.train.recipe import Recipe

FIELD_LINE = re.compile(r"^\s+(\w+):[^=#]*=[^#]*#\s*(?P<comment>.+)$")
SECTION_LINE = re.compile(r"^\s+#\s*(?P<title>.+)$")


def _comments_and_sections() -> tuple[dict[str, str], dict[str, str]]:
    """field -> its trailing comment; field -> the section comment just above it (the first field of a group)."""
    try:
        source = inspect.getsource(Recipe)
    except (OSError, TypeError):  # no source shipped: names and defaults still come from the dataclass
        return {}, {}
    comments, sections, pending = {}, {}, None
    for line in source.splitlines():
        section = SECTION_LINE.match(line)
        if section:
            pending = section["title"]
            continue
        name = re.match(r"^\s+(\w+):", line)
        if name:
            found = FIELD_LINE.match(line)
            if found:
                comments[name[1]] = found["comment"].strip()
            if pending:
                sections[name[1]], pending = pending, None
    return comments, sections


def _default(item: dataclasses.Field):
    if item.default is not dataclasses.MISSING:
        return item.default
    return item.default_factory()  # type: ignore[misc]


def options_help() -> str:
    comments, sections = _comments_and_sections()
    lines = ["recipe options (key=value on the command line overrides the recipe file; default shown):"]
    for item in dataclasses.fields(Recipe):
        if item.name == "extra":
            continue
        if item.name in sections:
            lines.append(f"  # {sections[item.name]}")
        value = _default(item)
        shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        entry = f"  {item.name}={shown}"
        if item.name in comments:
            entry = f"{entry:<44} {comments[item.name]}"
        lines.append(entry)
    return "\n".join(lines)
