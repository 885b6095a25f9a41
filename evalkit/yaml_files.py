"""Read the YAML files users write (task specs, suites, leaderboard definitions, recipes): a syntax error is
one line naming the file, never a parser traceback. These files may come from anyone (a CI job runs a pull
request's spec), so the loader is bounded: file size, nesting depth and the number of nodes after aliases are
expanded (a "billion laughs" anchor bomb is refused while it is being composed, before anything large exists)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from evalkit.errors import EvalkitError

# The largest shipped YAML (resources/tasks/cmmlu.yaml) is under 7 KB: 1 MiB leaves a wide margin.
MAX_BYTES = 1 << 20
# Shipped files nest 4 levels deep; 64 is far beyond any real spec and far below Python's recursion limit.
MAX_DEPTH = 64
# Nodes counted with every alias expanded: a 1 MiB file without aliases has at most ~500k nodes; an alias
# may only add what a plain file of that size could hold.
MAX_NODES = 500_000


class _Refused(yaml.YAMLError):
    """A bound was crossed; the message says which."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that tracks depth and the expanded node count while composing."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._weights: dict[int, int] = {}  # id(node) -> nodes it stands for once aliases are expanded

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            anchor = self.peek_event().anchor
            node = super().compose_node(parent, index)  # the already-built node: no copy is made here
            self._count(self._weights.get(id(node), 1), f"alias *{anchor}")
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep")
        before = self._nodes
        self._count(1, "the document")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._weights[id(node)] = self._nodes - before
        return node

    def _count(self, weight: int, what: str) -> None:
        self._nodes += weight
        if self._nodes > MAX_NODES:
            raise _Refused(f"{what} expands to more than {MAX_NODES} values (an anchor/alias bomb?)")


def read_yaml(path: Path, fix: str = "fix the file") -> Any:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise EvalkitError(f"{path}: cannot read ({exc.strerror}); check the path") from None
    if size > MAX_BYTES:
        raise EvalkitError(f"{path}: {size} bytes, more than the {MAX_BYTES} a YAML file may have; {fix}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EvalkitError(f"{path}: not UTF-8 (byte {exc.start}); save the file as UTF-8") from None
    return read_yaml_text(text, str(path), fix)


def read_yaml_text(text: str, where: str, fix: str = "fix the value") -> Any:
    """Parse YAML from a string (a recipe's ``key=value`` override, say) with the same bounds as files."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise EvalkitError(f"{where}: more than {MAX_BYTES} bytes of YAML; {fix}")
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise EvalkitError(f"{where}: not valid YAML ({first}); {fix}") from None
    except RecursionError:  # not expected below MAX_DEPTH; kept so no input can print a traceback
        raise EvalkitError(f"{where}: nested too deeply; {fix}") from None
    finally:
        loader.dispose()
