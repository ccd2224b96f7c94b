"""SQLite persistence for tasks, jobs, webhook registrations and the webhook outbox.

One aiosqlite connection (its own thread) in WAL mode with synchronous=FULL: the event loop never
waits on disk, and a restarted gateway (or a machine after power loss) finds every accepted job
and undelivered webhook where the old one left them. The file is 0600 (it names owners and URLs).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

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

#: (table, column, type) added since the first schema; applied by :meth:`Database.open`
MIGRATIONS = (("job_files", "error_code", "TEXT"),)


async def _migrate(tx: Transaction) -> None:
    """Columns added after a table was first created (a restarted gateway keeps its data)."""
    for table, column, kind in MIGRATIONS:
        names = {row["name"] for row in await tx.fetch_all(f"PRAGMA table_info({table})")}
        if column not in names:
            await tx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


class Transaction:
    """Statements of one unit of work; only valid inside ``Database.transaction()``."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        cursor = await self._conn.execute(sql, params)
        return cursor.rowcount

    async def fetch_one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        async with self._conn.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return dict(row) if row is not None else None

    async def fetch_all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        async with self._conn.execute(sql, params) as cursor:
            rows = await cursor.fetchall()
        return [dict(row) for row in rows]


class Database:
    """Thin async wrapper; callers write plain SQL with parameters (never string formatting).

    The connection is shared by every coroutine, so each unit of work (one statement, a batch,
    or a ``transaction()`` block) holds a lock from BEGIN to COMMIT/ROLLBACK: another coroutine's
    commit can no longer persist half of a failing batch, nor its rollback undo a write that
    already returned. Reads take the lock too, so they never see another unit's uncommitted rows.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # 0600 before SQLite opens it: the -wal and -shm files SQLite creates copy this mode
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)  # BEGIN is ours
        self._conn.row_factory = aiosqlite.Row
        await self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a job that was answered 202 survives a power loss, not just a process crash
        await self._conn.execute("PRAGMA synchronous=FULL")
        async with self.transaction() as tx:
            for statement in filter(str.strip, SCHEMA.split(";")):
                await tx.execute(statement)
            await _migrate(tx)

    async def close(self) -> None:
        if self._conn is not None:
            async with self._lock:
                await self._conn.close()
                self._conn = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One unit of work: BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the block raises."""
        async with self._lock:
            conn = self.conn
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(conn)
            except BaseException:
                await asyncio.shield(conn.execute("ROLLBACK"))
                raise
            await asyncio.shield(conn.execute("COMMIT"))

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement as its own transaction; returns the number of changed rows."""
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    async def execute_many(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run several statements in one transaction (all or nothing)."""
        async with self.transaction() as tx:
            for sql, params in statements:
                await tx.execute(sql, params)

    async def fetch_one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        async with self._lock:
            return await Transaction(self.conn).fetch_one(sql, params)

    async def fetch_all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        async with self._lock:
            return await Transaction(self.conn).fetch_all(sql, params)
