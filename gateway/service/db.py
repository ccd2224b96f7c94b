"""SQLite persistence for tasks, jobs, webhook registrations and the webhook outbox.

One aiosqlite connection (its own thread) in WAL mode: the event loop never waits on disk, and
a restarted gateway finds every job and undelivered webhook where the old one left them.
"""

from __future__ import annotations

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
    PRIMARY KEY (job_id, idx)
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
"""


class Database:
    """Thin async wrapper; callers write plain SQL with parameters (never string formatting)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = await aiosqlite.connect(self.path)
        self._conn.row_factory = aiosqlite.Row
        await self._conn.execute("PRAGMA journal_mode=WAL")
        await self._conn.execute("PRAGMA synchronous=NORMAL")
        await self._conn.executescript(SCHEMA)
        await self._conn.commit()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement and commit; returns the number of changed rows."""
        cursor = await self.conn.execute(sql, params)
        await self.conn.commit()
        return cursor.rowcount

    async def execute_many(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run several statements in one transaction (all or nothing)."""
        try:
            for sql, params in statements:
                await self.conn.execute(sql, params)
            await self.conn.commit()
        except BaseException:
            await self.conn.rollback()
            raise

    async def fetch_one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        async with self.conn.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return dict(row) if row is not None else None

    async def fetch_all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        async with self.conn.execute(sql, params) as cursor:
            rows = await cursor.fetchall()
        return [dict(row) for row in rows]
