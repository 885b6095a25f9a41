"""The request cache: every scored question and generated sample, kept as it completes, so a killed run
resumes where it stopped and a rerun computes nothing it already has.

Storage is one SQLite file in WAL mode (``<cache dir>/requests.sqlite``), chosen over append-only
files because one transaction per batch is atomic (a kill mid-write leaves the previous state, never
a half-record), concurrent runs may share the file (WAL: readers never block, writers wait their
turn), and lookups by key need no scan. Keys hash what determines an answer: the model's content
identity (weight and adapter hashes), the backend and its settings that change numbers (dtype,
device type, server, mc mode), and the request itself (prompt text, letters or stop strings and
limits). Batch size is not part of the key: predictions are identical across batch sizes and
probabilities agree to ~5e-6, so another batch size reuses the answers (see docs/reliability.md).

Backends consult the cache per *batch* of their own plan: a batch whose requests are all cached
is read back, any other batch is computed whole (and saved in one transaction). A rerun of the
same command therefore runs the same batches on the same inputs as the first run, and its numbers
are bit-identical to an uninterrupted run's; a kill costs at most the batch in flight.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError

SCHEMA = "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, " \
         "value TEXT NOT NULL, created REAL NOT NULL)"
FILE_NAME = "requests.sqlite"
COLUMNS = ("key", "kind", "model", "value", "created")


def check_healthy(db: sqlite3.Connection) -> None:
    """Raise sqlite3.DatabaseError unless the file is a sound SQLite database (quick_check is cheap)."""
    result = db.execute("PRAGMA quick_check").fetchall()
    if result != [("ok",)]:
        problems = [line for row in result for line in str(row[0]).splitlines() if "***" not in line]
        raise sqlite3.DatabaseError(f"quick_check found {len(problems)} problem(s), first: {(problems or ['?'])[0]}")


def set_aside(path: Path) -> Path:
    """Rename a damaged cache (and its WAL/SHM companions) to ``<name>.corrupt-<UTC timestamp>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    path.replace(target)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.replace(target.with_name(target.name + suffix))
    return target


def default_path() -> Path | None:
    """``$EVALKIT_REQUEST_CACHE`` (a file path, or ``off``), else ``<cache dir>/requests.sqlite``."""
    import os

    from evalkit.cache import cache_dir

    chosen = os.environ.get("EVALKIT_REQUEST_CACHE")
    if chosen:
        return None if chosen.lower() == "off" else Path(chosen).expanduser()
    return cache_dir() / FILE_NAME


class RequestCache:
    def __init__(self, path: Path, namespace: dict):
        self.path = Path(path)
        self.namespace = json.dumps(namespace, sort_keys=True)
        self.model = str(namespace.get("model"))
        self.hits = 0
        self.computed = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = self._connect()
        except sqlite3.DatabaseError as exc:
            # A malformed file would fail every run after the model load: set it aside, start empty.
            moved = set_aside(self.path)
            print(f"evalkit: warning: request cache {self.path} is damaged ({exc}); moved it to {moved} "
                  "and started an empty cache", file=sys.stderr)
            self.db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
        try:
            check_healthy(db)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed batch survives a process kill
            db.execute(SCHEMA)
            columns = [row[1] for row in db.execute("PRAGMA table_info(responses)")]
            if columns != list(COLUMNS):
                raise sqlite3.DatabaseError(f"table 'responses' has columns {columns}, not evalkit's")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @classmethod
    def open(cls, namespace: dict, path: Path | None = None) -> RequestCache | None:
        """The cache, or None with one warning if it cannot be opened (the run goes on uncached)."""
        try:
            path = path or default_path()
            return None if path is None else cls(path, namespace)
        except (OSError, sqlite3.Error) as exc:
            where = path or "the evalkit cache directory"
            print(f"evalkit: warning: request cache unavailable at {where} ({exc}); this run is not cached "
                  "and cannot resume (set EVALKIT_CACHE_DIR to a writable directory)", file=sys.stderr)
            return None

    def key(self, kind: str, payload: dict) -> str:
        text = json.dumps({"ns": self.namespace, "kind": kind, "request": payload}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):  # SQLite's bound-parameter limit
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, value in self.db.execute(f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk):
                found[key] = json.loads(value)
        return found

    def put_many(self, kind: str, items: Sequence[tuple[str, Any]]) -> None:
        """One transaction: all of a batch is saved, or (after a kill) none of it."""
        now = time.time()
        rows = [(key, kind, self.model, json.dumps(value, ensure_ascii=False), now) for key, value in items]
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as exc:  # a full disk must not stop hours of scoring: warn, keep going uncached
            print(f"evalkit: warning: could not save {len(rows)} results to the request cache ({exc})", file=sys.stderr)

    def counts(self) -> dict:
        return {"from_cache": self.hits, "computed": self.computed}


class BatchMemo:
    """One task's requests as a backend batches them: all-or-nothing reads, one write per batch."""

    def __init__(self, cache: RequestCache | None, kind: str, keys: list[str]):
        self.cache, self.kind, self.keys = cache, kind, keys
        self.found = cache.get_many(keys) if cache is not None else {}

    def has(self, batch: Sequence[int]) -> bool:
        return self.cache is not None and all(self.keys[i] in self.found for i in batch)

    def cached(self, batch: Sequence[int]) -> list | None:
        if not self.has(batch):
            return None
        self.cache.hits += len(batch)
        return [self.found[self.keys[i]] for i in batch]

    def save(self, batch: Sequence[int], values: Sequence[Any]) -> None:
        if self.cache is None:
            return
        self.cache.computed += len(batch)
        self.cache.put_many(self.kind, [(self.keys[i], v) for i, v in zip(batch, values)])

    def postfix(self) -> dict:
        return {"cached": self.cache.hits} if self.cache is not None else {}


def through_memo(memo: BatchMemo | None, count: int, batches, compute, bar=None) -> list:
    """``count`` answers in input order, batch by batch: a batch all cached is read back, any other is
    computed whole (``compute(indices) -> values``) and saved in one transaction. ``bar``: a tqdm to advance."""
    results: list = [None] * count
    for batch in batches:
        values = memo.cached(batch) if memo is not None else None
        if values is None:
            values = compute(batch)
            if memo is not None:
                memo.save(batch, values)
                if bar is not None:
                    bar.set_postfix(memo.postfix(), refresh=False)
        for i, value in zip(batch, values):
            results[i] = value
        if bar is not None:
            bar.update(len(batch))
    return results


def info(path: Path | None = None) -> dict:
    path = path or default_path()
    if path is None:
        return {"path": "off ($EVALKIT_REQUEST_CACHE)", "exists": False, "entries": 0, "bytes": 0, "by_kind": {}, "models": 0}
    if not path.is_file():
        return {"path": str(path), "exists": False, "entries": 0, "bytes": 0, "by_kind": {}, "models": 0}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)  # info never changes the file
    try:
        check_healthy(db)
        by_kind = dict(db.execute("SELECT kind, COUNT(*) FROM responses GROUP BY kind").fetchall())
        models = db.execute("SELECT COUNT(DISTINCT model) FROM responses").fetchone()[0]
        oldest, newest = db.execute("SELECT MIN(created), MAX(created) FROM responses").fetchone()
    except sqlite3.Error as exc:
        raise EvalkitError(f"request cache {path} is not a readable evalkit cache ({exc}); "
                           "run 'evalkit cache clear' to set it aside and start empty") from None
    finally:
        db.close()
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return {"path": str(path), "exists": True, "entries": sum(by_kind.values()), "bytes": size, "by_kind": by_kind,
            "models": models, "oldest": oldest, "newest": newest}


def clear(path: Path | None = None) -> int:
    path = path or default_path()
    if path is None or not path.is_file():
        return 0
    try:
        db = sqlite3.connect(str(path), timeout=60)
        try:
            check_healthy(db)
            with db:
                removed = db.execute("DELETE FROM responses").rowcount
            db.execute("VACUUM")
        finally:
            db.close()
    except sqlite3.Error as exc:  # damaged or foreign: keep its bytes for inspection, the cache starts empty
        moved = set_aside(path)
        print(f"evalkit: warning: request cache {path} was not a readable evalkit cache ({exc}); "
              f"moved it to {moved}", file=sys.stderr)
        return 0
    return removed
