"""The shared database: PostgreSQL through an asyncpg pool, for several gateway replicas.

The schema is the SQLite one with PostgreSQL's types (``REAL`` is single precision there: times
need ``DOUBLE PRECISION``) and the statements are the same, their ``?`` parameters numbered
(``$1``, ``$2``...). Transactions run at READ COMMITTED; work is claimed with
``SELECT ... FOR UPDATE SKIP LOCKED`` and checks that must see every replica's inserts take a
transaction-scoped advisory lock (``serialize``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import asyncpg

from gateway.service.db import MIGRATIONS, run_unit, schema_statements

#: one advisory lock key for schema creation: two replicas starting together must not race
SCHEMA_LOCK = "mlsharp:schema"
_TYPES = ((re.compile(r"\bREAL\b"), "DOUBLE PRECISION"), (re.compile(r"\bBLOB\b"), "BYTEA"))
_ROWCOUNT = re.compile(r"(\d+)$")


def numbered(sql: str) -> str:
    """``?`` -> ``$1, $2, ...``, leaving quoted text alone."""
    out: list[str] = []
    count = 0
    quote: str | None = None
    for char in sql:
        if quote is not None:
            quote = None if char == quote else quote
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            count += 1
            out.append(f"${count}")
            continue
        out.append(char)
    return "".join(out)


def postgres_ddl(statement: str) -> str:
    for pattern, replacement in _TYPES:
        statement = pattern.sub(replacement, statement)
    return statement


def rowcount(status: str) -> int:
    """asyncpg answers a command with its tag (``UPDATE 3``); the number is the rows changed."""
    match = _ROWCOUNT.search(status or "")
    return int(match.group(1)) if match else 0


class PostgresTransaction:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        return rowcount(await self._conn.execute(numbered(sql), *params))

    async def fetch_one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        row = await self._conn.fetchrow(numbered(sql), *params)
        return dict(row) if row is not None else None

    async def fetch_all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._conn.fetch(numbered(sql), *params)]

    async def serialize(self, name: str) -> None:
        await self._conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)


class PostgresDatabase:
    dialect: Literal["sqlite", "postgresql"] = "postgresql"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    greatest = "GREATEST"

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=self.pool_size, command_timeout=60
        )
        async with self.transaction() as tx:
            await tx.serialize(SCHEMA_LOCK)
            for statement in schema_statements():
                await tx.execute(postgres_ddl(statement))
            for table, column, kind in MIGRATIONS:
                await tx.execute(
                    postgres_ddl(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
                )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database is not open")
        return self._pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield PostgresTransaction(conn)

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        async with self.pool.acquire() as conn:
            return rowcount(await conn.execute(numbered(sql), *params))

    async def execute_many(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        await run_unit(self, statements)

    async def fetch_one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(numbered(sql), *params)
        return dict(row) if row is not None else None

    async def fetch_all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            return [dict(row) for row in await conn.fetch(numbered(sql), *params)]
