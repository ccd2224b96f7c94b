"""Issue 13 item 5: one transaction per unit of work, and the durability settings of item 7
(synchronous=FULL, 0600 database file). The unit-of-work contract runs on both databases:
the embedded SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from gateway.service.db import Database
from gateway.service.db_postgres import PostgresDatabase
from gateway.service.db_sqlite import SqliteDatabase


@pytest.fixture(params=["sqlite", "postgresql"])
def new_db(request: pytest.FixtureRequest, tmp_path: Path):
    """A factory of fresh, unopened databases of one kind."""
    if request.param == "sqlite":
        return lambda name: SqliteDatabase(tmp_path / name)
    server = request.getfixturevalue("postgres_server")
    return lambda name: PostgresDatabase(server.create_database())


def run(db: Database, scenario) -> list[str]:
    async def main() -> list[str]:
        await db.open()
        try:
            await db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
            await scenario(db)
            return [row["k"] for row in await db.fetch_all("SELECT k FROM t ORDER BY k")]
        finally:
            await db.close()

    return asyncio.run(main())


def test_a_failing_unit_is_not_half_committed_by_another(new_db) -> None:
    async def scenario(db: Database) -> None:
        failing = db.execute_many(
            [("INSERT INTO t VALUES ('half')", ()), ("INSERT INTO missing VALUES (1)", ())]
        )
        other = db.execute("INSERT INTO t VALUES ('other')")
        results = await asyncio.gather(failing, other, return_exceptions=True)
        assert isinstance(results[0], Exception) and results[1] == 1

    assert run(new_db("a.sqlite3"), scenario) == ["other"]


def test_a_rollback_never_removes_another_units_write(new_db) -> None:
    async def scenario(db: Database) -> None:
        async def other() -> int:
            await asyncio.sleep(0)  # let the failing unit open its transaction first
            return await db.execute("INSERT INTO t VALUES ('kept')")

        failing = db.execute_many(
            [
                ("INSERT INTO t VALUES ('dup')", ()),
                ("INSERT INTO t VALUES ('x')", ()),
                ("INSERT INTO t VALUES ('dup')", ()),
            ]
        )
        results = await asyncio.gather(failing, other(), return_exceptions=True)
        assert isinstance(results[0], Exception) and results[1] == 1  # "kept" was reported written

    assert run(new_db("b.sqlite3"), scenario) == ["kept"]


def test_many_concurrent_units_stay_whole(new_db) -> None:
    async def scenario(db: Database) -> None:
        async def unit(n: int) -> None:
            ok = [(f"INSERT INTO t VALUES ('{n}-a')", ()), (f"INSERT INTO t VALUES ('{n}-b')", ())]
            bad = [(f"INSERT INTO t VALUES ('{n}-a')", ()), ("INSERT INTO missing VALUES (1)", ())]
            await db.execute_many(ok if n % 2 else bad)

        await asyncio.gather(*(unit(n) for n in range(20)), return_exceptions=True)

    rows = run(new_db("c.sqlite3"), scenario)
    assert rows == sorted(f"{n}-{s}" for n in range(1, 20, 2) for s in "ab")


def test_durable_and_private_database(tmp_path: Path) -> None:
    async def main() -> int:
        db = SqliteDatabase(tmp_path / "var" / "gateway.sqlite3")
        await db.open()
        try:
            row = await db.fetch_one("PRAGMA synchronous")
            return int(next(iter(row.values())))
        finally:
            await db.close()

    assert asyncio.run(main()) == 2  # FULL: a committed job survives power loss
    mode = stat.S_IMODE((tmp_path / "var" / "gateway.sqlite3").stat().st_mode)
    assert mode == 0o600, oct(mode)


def test_transaction_reads_and_writes_as_one_unit(new_db) -> None:
    """A read-then-write unit (the queue-limit check) cannot interleave with another."""

    async def scenario(db: Database) -> None:
        async def reserve(name: str) -> bool:
            async with db.transaction() as tx:
                await tx.serialize("t")
                row = await tx.fetch_one("SELECT COUNT(*) AS n FROM t")
                await asyncio.sleep(0.01)  # another unit would slip in here without isolation
                if row["n"] >= 1:
                    return False
                await tx.execute("INSERT INTO t VALUES (?)", (name,))
                return True

        assert sorted(await asyncio.gather(*(reserve(str(i)) for i in range(5)))) == [False] * 4 + [True]

    assert len(run(new_db("d.sqlite3"), scenario)) == 1
