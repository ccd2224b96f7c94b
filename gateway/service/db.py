"""Persistence for tasks, jobs, webhook registrations and the webhook outbox: one interface, two
implementations chosen by settings.

- SQLite (``db_sqlite``): the embedded default, one file next to the results; no server needed.
- PostgreSQL (``db_postgres``): shared by many gateway replicas (``database_url``).

Callers write portable SQL with ``?`` parameters (never string formatting). The few places where
the dialects differ read an attribute of the database (``skip_locked``, ``greatest``) instead of
branching on its type.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from gateway.settings import Settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, owner TEXT NOT NULL, state TEXT NOT NULL, formats TEXT NOT NULL,
    focal_px REAL, focal_mm REAL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    finished_at REAL, expires_at REAL, error TEXT, base_url TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS job_files (
    job_id TEXT NOT NULL, idx INTEGER NOT NULL, filename TEXT NOT NULL, stem TEXT NOT NULL,
    state TEXT NOT NULL, error TEXT, outputs TEXT NOT NULL DEFAULT '{}', processing_time REAL,
    error_code TEXT, PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, event_type TEXT NOT NULL, url TEXT NOT NULL,
    secret TEXT NOT NULL, created_at REAL NOT NULL, UNIQUE (owner, event_type)
);
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, event_type TEXT NOT NULL, body BLOB NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
    last_error TEXT, created_at REAL NOT NULL, delivered_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_attempt_at);
CREATE TABLE IF NOT EXISTS blobs (
    blob_key TEXT PRIMARY KEY, size_bytes BIGINT NOT NULL, owner_id TEXT, scene_key TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS blobs_owner ON blobs(owner_id);
CREATE INDEX IF NOT EXISTS blobs_scene ON blobs(scene_key);
CREATE TABLE IF NOT EXISTS scenes (scene_key TEXT PRIMARY KEY, accessed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS file_refs (
    task_id TEXT NOT NULL, name TEXT NOT NULL, blob_key TEXT NOT NULL, size_bytes BIGINT NOT NULL,
    created_at REAL NOT NULL, PRIMARY KEY (task_id, name)
);
CREATE INDEX IF NOT EXISTS file_refs_blob ON file_refs(blob_key);
"""

#: (table, column, type) added since the first schema; applied at open, on both databases.
#: lease_owner/lease_expires_at: which replica works on a job, and until when (see jobs.py);
#: jobs.render: the job also renders a still and a video; job_files.stage: what a running file does
MIGRATIONS = (
    ("job_files", "error_code", "TEXT"),
    ("jobs", "lease_owner", "TEXT"),
    ("jobs", "lease_expires_at", "REAL"),
    ("jobs", "render", "INTEGER NOT NULL DEFAULT 0"),
    ("job_files", "stage", "TEXT"),
)


def schema_statements() -> list[str]:
    return [statement.strip() for statement in SCHEMA.split(";") if statement.strip()]


class Transaction(Protocol):
    """Statements of one unit of work; only valid inside ``Database.transaction()``."""

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        ...

    async def fetch_one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None: ...

    async def fetch_all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]: ...

    async def serialize(self, name: str) -> None:
        """Make units that call this with the same ``name`` run one after another (a check
        followed by an insert, such as the queue limit, stays atomic across replicas)."""
        ...


class Database(Protocol):
    dialect: Literal["sqlite", "postgresql"]
    #: appended to a ``SELECT`` that claims rows: other replicas skip what one has locked
    skip_locked: str
    #: the two-argument maximum function (``MAX`` in SQLite, ``GREATEST`` in PostgreSQL)
    greatest: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """One unit of work: committed when the block ends, rolled back if it raises."""
        ...

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int: ...

    async def execute_many(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Several statements in one transaction (all or nothing)."""
        ...

    async def fetch_one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None: ...

    async def fetch_all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]: ...


def build_database(settings: Settings) -> Database:
    """PostgreSQL when ``database_url`` is set, else the embedded SQLite file."""
    if settings.database_url is not None:
        from gateway.service.db_postgres import PostgresDatabase

        return PostgresDatabase(settings.database_url.get_secret_value(), settings.database_pool_size)
    from gateway.service.db_sqlite import SqliteDatabase

    return SqliteDatabase(settings.database_path)


async def run_unit(db: Database, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    """Shared body of ``execute_many``."""
    async with db.transaction() as tx:
        for sql, params in statements:
            await tx.execute(sql, params)
