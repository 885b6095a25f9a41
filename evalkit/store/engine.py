"""Open the results store: SQLite by default (WAL, one writer at a time), any SQLAlchemy URL otherwise."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import platformdirs
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from evalkit.errors import EvalkitError
from evalkit.store.schema import Base

BUSY_TIMEOUT_MS = 120_000  # concurrent writers wait this long for the write lock


def default_url() -> str:
    """``EVALKIT_STORE`` if set, else ``<user data dir>/evalkit/store.sqlite``."""
    if os.environ.get("EVALKIT_STORE"):
        return os.environ["EVALKIT_STORE"]
    return str(Path(platformdirs.user_data_dir("evalkit")) / "store.sqlite")


def normalise_url(url: str | None) -> str:
    """Accept a SQLAlchemy URL (postgresql://..., sqlite:///...) or a plain file path."""
    url = url or default_url()
    if "://" not in url:
        path = Path(url).expanduser().resolve()
        url = f"sqlite:///{path}"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: an unclosed [IPv6] host, a bad port
        raise EvalkitError(f"--store {_redacted(url)!r} is not a database URL; use a file path or "
                           "e.g. postgresql://user@host/db") from None
    if parsed.get_backend_name() == "sqlite" and parsed.query:
        # pysqlite ignores most URL options (?mode=ro opened a writable store) or fails on them later:
        # evalkit opens its store read-write with its own settings, so any option is refused up front.
        raise EvalkitError(f"--store {shown(url)}: SQLite store options ({', '.join(sorted(parsed.query))}) are not "
                           "supported (the store is always opened read-write); drop the ?... part")
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        directory = Path(parsed.database).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EvalkitError(f"{directory}: cannot create the store's directory ({exc.strerror}); pass --store PATH") from None
    return url


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own handling defers it).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection):
        # IMMEDIATE takes the write lock up front: a deferred transaction that read first could
        # fail with SQLITE_BUSY (no waiting) when another process committed in between.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    scheme = make_url(url).drivername
    try:
        engine = create_engine(url, future=True)
    except (ValueError, TypeError) as exc:  # a bad option value, e.g. ?connect_timeout=banana
        raise EvalkitError(f"--store {shown(url)}: {type(exc).__name__} in the URL's options ({_redacted(str(exc))}); "
                           "fix or drop the ?... part") from None
    except NoSuchModuleError:
        raise EvalkitError(f"--store {shown(url)}: unknown database scheme {scheme!r}; use a SQLite file path, "
                           "sqlite:///PATH or a SQLAlchemy URL such as postgresql://user@host/db") from None
    except ImportError as exc:  # the dialect is known but its driver package is not installed
        raise EvalkitError(f"--store {shown(url)}: the database driver for {scheme!r} is not installed "
                           f"(no module {exc.name!r}); pip install it or use a SQLite path") from None
    if engine.dialect.name == "sqlite":
        _refuse_foreign_sqlite(url)  # read-only, before the WAL pragma rewrites the file's header
        _sqlite_pragmas(engine)
    try:
        with engine.begin() as connection:  # concurrent first use: the lock serialises CREATE TABLE
            foreign = _foreign_tables(connection)  # before CREATE: a foreign database gets no evalkit tables
            if not foreign:
                Base.metadata.create_all(connection)
    except DatabaseError as exc:  # OperationalError (cannot open/connect) or "file is not a database"
        raise EvalkitError(f"cannot open the results store {shown(url)}: {_redacted(str(exc.orig).splitlines()[0])}; "
                           "check the path/URL (a SQLite store is a file evalkit created) or pass --store") from None
    except (ValueError, TypeError) as exc:  # an option the driver rejects when connecting
        raise EvalkitError(f"--store {shown(url)}: the database driver rejected the URL's options "
                           f"({_redacted(str(exc))}); fix or drop the ?... part") from None
    if foreign:
        engine.dispose()
        raise EvalkitError(f"--store {shown(url)}: table {foreign[0]} is not an evalkit store's (it lacks columns "
                           f"{', '.join(foreign[1])}); this database belongs to something else: pass --store with a new file")
    return engine


def _refuse_foreign_sqlite(url: str) -> None:
    """An existing SQLite file whose tables are not evalkit's is refused without writing a byte to it."""
    database = make_url(url).database
    if not database or database == ":memory:" or not Path(database).is_file():
        return
    import sqlite3

    reader = create_engine("sqlite://", creator=lambda: sqlite3.connect(f"file:{database}?mode=ro", uri=True))
    try:
        with reader.connect() as connection:
            foreign = _foreign_tables(connection)
    except DatabaseError:
        return  # unreadable: engine_for reports it with its own message
    finally:
        reader.dispose()
    if foreign:
        raise EvalkitError(f"--store {shown(url)}: table {foreign[0]} is not an evalkit store's (it lacks columns "
                           f"{', '.join(foreign[1])}); this database belongs to something else: pass --store with a new file")


def _foreign_tables(connection) -> tuple[str, list[str]] | None:
    """(table, missing columns) for the first existing table that lacks evalkit's columns, else None."""
    from sqlalchemy import inspect

    inspector = inspect(connection)
    for table in Base.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in have]
        if missing:
            return table.name, missing
    return None


def _redacted(text: str) -> str:
    """``text`` with any ``user:password@`` in it shown as ``user:***@`` (for URLs make_url cannot parse)."""
    import re

    return re.sub(r"(://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)


def shown(url: str) -> str:
    """The URL as shown in messages: any password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def open_store(url: str | None = None) -> tuple[sessionmaker[Session], str]:
    url = normalise_url(url)
    return sessionmaker(engine_for(url), expire_on_commit=False), url
