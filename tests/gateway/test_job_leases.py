"""Job leases on both databases: a job is claimed by one replica at a time, a dead replica's
job is taken over once its lease expires, and a replica that lost a job changes nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.service.db import Database
from gateway.service.db_postgres import PostgresDatabase
from gateway.service.db_sqlite import SqliteDatabase
from gateway.service.job_leases import JobLeases


@pytest.fixture(params=["sqlite", "postgresql"])
def db_pair(request: pytest.FixtureRequest, tmp_path: Path):
    """Two connections to one database, as two replicas have (SQLite: two connections to one
    file, which is what two processes on one host get)."""
    if request.param == "sqlite":
        path = tmp_path / "jobs.sqlite3"
        return SqliteDatabase(path), SqliteDatabase(path)
    url = request.getfixturevalue("postgres_url")
    return PostgresDatabase(url), PostgresDatabase(url)


async def add_jobs(db: Database, count: int) -> list[str]:
    ids = [f"{n:032x}" for n in range(1, count + 1)]
    now = time.time()
    await db.execute_many(
        [
            (
                "INSERT INTO jobs (job_id, owner, state, formats, created_at, updated_at) "
                "VALUES (?, 'o', 'queued', '[\"ply\"]', ?, ?)",
                (job_id, now + n, now + n),
            )
            for n, job_id in enumerate(ids)
        ]
    )
    return ids


def run(db_pair, scenario) -> None:
    async def main() -> None:
        for db in db_pair:
            await db.open()
        try:
            await scenario(*db_pair)
        finally:
            for db in db_pair:
                await db.close()

    asyncio.run(main())


def test_concurrent_claims_never_share_a_job(db_pair) -> None:
    async def scenario(db_a: Database, db_b: Database) -> None:
        ids = await add_jobs(db_a, 10)
        a, b = JobLeases(db_a, "replica-a", 30.0), JobLeases(db_b, "replica-b", 30.0)
        claims = await asyncio.gather(*(lease.claim() for _ in range(12) for lease in (a, b)))
        claimed = [job_id for job_id in claims if job_id is not None]
        assert sorted(claimed) == ids  # every job once, nobody twice, two claims found nothing
        owners = await db_a.fetch_all("SELECT lease_owner FROM jobs")
        assert {row["lease_owner"] for row in owners} <= {"replica-a", "replica-b"}

    run(db_pair, scenario)


def test_an_expired_lease_is_taken_over_and_the_old_holder_is_fenced(db_pair) -> None:
    async def scenario(db_a: Database, db_b: Database) -> None:
        (job_id,) = await add_jobs(db_a, 1)
        a, b = JobLeases(db_a, "replica-a", 0.3), JobLeases(db_b, "replica-b", 30.0)
        assert await a.claim() == job_id
        assert await b.claim() is None  # alive: not claimable
        await asyncio.sleep(0.4)  # replica a stopped renewing
        assert await b.claim() == job_id
        assert not await a.renew(job_id) and not await a.holds(job_id)
        fence, params = a.fence()
        changed = await db_a.execute(
            f"UPDATE jobs SET error = 'late write' WHERE job_id = ? AND {fence}", (job_id, *params)
        )
        assert changed == 0
        assert await b.holds(job_id) and await b.renew(job_id)

    run(db_pair, scenario)


def test_released_leases_are_claimable_at_once_and_finished_jobs_never(db_pair) -> None:
    async def scenario(db_a: Database, db_b: Database) -> None:
        first, second = await add_jobs(db_a, 2)
        a, b = JobLeases(db_a, "replica-a", 30.0), JobLeases(db_b, "replica-b", 30.0)
        assert [await a.claim(), await a.claim()] == [first, second]
        await db_a.execute("UPDATE jobs SET state = 'completed' WHERE job_id = ?", (second,))
        assert await a.release_all() == 1  # only the active one
        assert await b.claim() == first
        assert await b.claim() is None

    run(db_pair, scenario)
