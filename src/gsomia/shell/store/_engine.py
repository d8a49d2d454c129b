"""The engine (durability and locking settings) and the schema's migrations."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gsomia.core.errors import MalformedInput

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def resolve_url(url: str, folder: Path) -> str:
    """A relative SQLite path is taken relative to the node folder."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rest = url[len("sqlite:///"):]
        if rest and rest != ":memory:" and not os.path.isabs(rest):
            return "sqlite:///" + str((folder / rest).resolve())
    return url


# What the database raises when it refuses, is busy or is gone: the shell catches it by this
# name, and so never imports the database library itself.
StoreError = sa.exc.SQLAlchemyError
# A write the database refused on one of the schema's constraints: a unique key another
# commit stored first (two deliveries of one nonce racing), never a fault of the disk.
ConstraintViolated = sa.exc.IntegrityError


def mask_url(url: str) -> str:
    """The URL with any password hidden."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # shown to people only
        return url


def make_engine(url: str) -> sa.Engine:
    """An engine with the durability and locking settings described in the module docstring."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise MalformedInput(f"{url!r} is not a database URL", where="db",
                             expected="sqlite:///PATH or postgresql+psycopg://USER@HOST/DB") \
            from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        # The connection used last is handed out first: SQLite empties a connection's page
        # cache when another one has committed since its last read, and each commit of a
        # lone caller (a read's audit event, a publish) is then on the connection it reads
        # from next. Handed out in turns (the default), every read began cold.
        engine = sa.create_engine(url, connect_args={"timeout": 30}, pool_use_lifo=True)

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            # Transactions are begun by hand below, so the driver must not begin its own.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT * 1000)}")
            # A million items' indexes do not fit SQLite's 2 MB default page cache; every
            # insert then rereads index pages through the OS.
            cur.execute("PRAGMA cache_size=-65536")
            # Never a memory map of the file, whatever the build's default: the host's disk
            # is not trusted, and a file cut short under a mapping kills the whole process
            # by SIGBUS when a mapped page past its new end is touched (SQLite documents
            # it). Read by system calls, a short file is an I/O error SQLite reports.
            cur.execute("PRAGMA mmap_size=0")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            options = conn.get_execution_options()
            if options.get("gsomia_write", False):
                _begin_immediate(conn.connection.dbapi_connection,
                                 at_once=options.get("gsomia_at_once", False))
            else:
                _begin_deferred(conn.connection.dbapi_connection)

        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", ""):
            raise MalformedInput(f"driver {parsed.get_driver_name()} is not supported",
                                 where="db", expected="postgresql+psycopg://…")
        if parsed.get_driver_name() == "":
            url = parsed.set(drivername="postgresql+psycopg").render_as_string(
                hide_password=False)
        return sa.create_engine(url, pool_pre_ping=True)
    raise MalformedInput(f"unsupported database {backend!r}", where="db",
                         expected="sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")


LOCK_WAIT = 30.0


def _begin_deferred(dbapi_conn: Any) -> None:
    """``BEGIN`` of a read, on the driver's connection: through SQLAlchemy's statement path
    it cost a GET by id a fifth of its read transaction."""
    import sqlite3

    try:
        dbapi_conn.execute("BEGIN")
    except sqlite3.Error as exc:  # as a statement's failure surfaces elsewhere
        raise sa.exc.OperationalError("BEGIN", None, exc) from exc


class WriterBusy(sa.exc.OperationalError):
    """Another writer holds the database's write lock, and the unit of work was to take it
    at once or not at all (``Store.uow(at_once=True)``): nothing was read or written."""


def _begin_immediate(dbapi_conn: Any, timeout: float = LOCK_WAIT, *,
                     at_once: bool = False) -> None:
    """``BEGIN IMMEDIATE``, waiting for another writer in steps of at most 2 ms.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25… ms between tries, so a writer
    that finds the lock taken for 3 ms waits 8, and one behind a 10 ms commit waits 18: at
    light load that sleep, not the work, made the delivery latency's tail. The lock and what
    it serialises are unchanged; only the waiting is finer. ``busy_timeout`` stays in force
    for every other statement (readers meeting a checkpoint)."""
    import sqlite3
    import time

    end = time.monotonic() + timeout
    pause = 0.0002
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                dbapi_conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if at_once and "locked" in str(exc):
                    raise WriterBusy("BEGIN IMMEDIATE", None, exc) from exc
                if "locked" not in str(exc) or time.monotonic() >= end:
                    # As a statement's failure surfaces elsewhere: wrapped by SQLAlchemy.
                    raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, exc) from exc
            time.sleep(pause)
            pause = min(0.002, pause * 1.5)
    finally:
        dbapi_conn.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT * 1000)}")


_REVISION = re.compile(r'^revision\s*(?::\s*str\s*)?=\s*["\']([^"\']+)["\']', re.M)
_DOWN = re.compile(r'^down_revision\s*(?::[^=]*)?=\s*(?:["\']([^"\']+)["\']|None)', re.M)


def script_head() -> str:
    """The newest migration, read from the files (importing Alembic costs a second)."""
    revisions: dict[str, str | None] = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text("utf-8")
        rev, down = _REVISION.search(text), _DOWN.search(text)
        if rev:
            revisions[rev.group(1)] = down.group(1) if down else None
    heads = set(revisions) - {d for d in revisions.values() if d}
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest migration (a no-op, without Alembic, when it is)."""
    if current_revision(engine) == script_head():
        return
    from alembic import command
    from alembic.config import Config

    known = set(_REVISION.findall("\n".join(
        path.read_text("utf-8") for path in (MIGRATIONS / "versions").glob("*.py"))))
    found = current_revision(engine)
    if found is not None and found not in known:
        raise MalformedInput(f"the database's schema version {found!r} is not one of this "
                             "gsomia's", where=str(engine.url),
                             expected="a database made by gsomia node init "
                                      "(alembic_version untouched)")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.connect().execution_options(gsomia_write=True) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                # Two processes opening a fresh database must not both create the schema.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(72311)")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except Exception as exc:  # alembic raises its own kinds, assertions among them
        # alembic's CommandError is a RuntimeError: an unknown or missing schema version
        # (alembic_version rewritten or deleted) must not open, nor crash, the node.
        raise MalformedInput(
            f"the database's schema version cannot be brought up to date: "
            f"{type(exc).__name__}: {str(exc)[:200]}", where=str(engine.url),
            expected="a database made by gsomia node init (alembic_version untouched)") \
            from None
