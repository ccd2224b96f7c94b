"""The embedded database: one SQLite file next to the results, no server.

One aiosqlite connection (its own thread) in WAL mode with synchronous=FULL: the event loop never
waits on disk, and a restarted gateway (or a machine after power loss) finds every accepted job
and undelivered webhook where the old one left them. The file is 0600 (it names owners and URLs).
SQLite over a network file system is not safe: several replicas use PostgreSQL instead.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from gateway.service.db import MIGRATIONS, run_unit, schema_statements


class SqliteTransaction:
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

    async def serialize(self, name: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already makes every unit a single writer."""


class SqliteDatabase:
    """The connection is shared by every coroutine, so each unit of work (one statement, a batch,
    or a ``transaction()`` block) holds a lock from BEGIN to COMMIT/ROLLBACK: another coroutine's
    commit can no longer persist half of a failing batch, nor its rollback undo a write that
    already returned. Reads take the lock too, so they never see another unit's uncommitted rows.
    """

    dialect: Literal["sqlite", "postgresql"] = "sqlite"
    skip_locked = ""  # BEGIN IMMEDIATE: one writer at a time, nothing to skip
    greatest = "MAX"

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
            for statement in schema_statements():
                await tx.execute(statement)
            for table, column, kind in MIGRATIONS:  # columns added after a table was created
                names = {row["name"] for row in await tx.fetch_all(f"PRAGMA table_info({table})")}
                if column not in names:
                    await tx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

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
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK if the block raises."""
        async with self._lock:
            conn = self.conn
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteTransaction(conn)
            except BaseException:
                await asyncio.shield(conn.execute("ROLLBACK"))
                raise
            await asyncio.shield(conn.execute("COMMIT"))

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    async def execute_many(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        await run_unit(self, statements)

    async def fetch_one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        async with self._lock:
            return await SqliteTransaction(self.conn).fetch_one(sql, params)

    async def fetch_all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        async with self._lock:
            return await SqliteTransaction(self.conn).fetch_all(sql, params)
