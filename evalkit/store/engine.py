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
    except ArgumentError:
        raise EvalkitError(f"--store {url!r} is not a database URL; use a file path or e.g. postgresql://user@host/db") from None
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
    except NoSuchModuleError:
        raise EvalkitError(f"--store {shown(url)}: unknown database scheme {scheme!r}; use a SQLite file path, "
                           "sqlite:///PATH or a SQLAlchemy URL such as postgresql://user@host/db") from None
    except ImportError as exc:  # the dialect is known but its driver package is not installed
        raise EvalkitError(f"--store {shown(url)}: the database driver for {scheme!r} is not installed "
                           f"(no module {exc.name!r}); pip install it or use a SQLite path") from None
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    try:
        with engine.begin() as connection:  # concurrent first use: the lock serialises CREATE TABLE
            Base.metadata.create_all(connection)
    except DatabaseError as exc:  # OperationalError (cannot open/connect) or "file is not a database"
        raise EvalkitError(f"cannot open the results store {shown(url)}: {str(exc.orig).splitlines()[0]}; "
                           "check the path/URL (a SQLite store is a file evalkit created) or pass --store") from None
    return engine


def shown(url: str) -> str:
    """The URL as shown in messages: any password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def open_store(url: str | None = None) -> tuple[sessionmaker[Session], str]:
    url = normalise_url(url)
    return sessionmaker(engine_for(url), expire_on_commit=False), url
