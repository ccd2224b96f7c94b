"""Job leases: which replica works on a job, and until when.

Why: several gateways share one database. A worker *claims* a queued or running job whose lease
is free or expired (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's single writer
gives the same), renews the lease while it works, and every write it makes about the job is
*fenced* by the lease: a replica that lost its lease (it stalled, or was presumed dead) changes
nothing, so no file is recorded twice. A replica that dies simply stops renewing; once the lease
expires another claims the job and resumes it from its first unfinished file.
"""

from __future__ import annotations

import os
import secrets
import socket
import time

from gateway.service.db import Database

ACTIVE_SQL = "state IN ('queued', 'running')"


class LeaseLost(Exception):
    """This replica no longer holds the job (cancelled, finished elsewhere, or taken over)."""


def default_replica_id() -> str:
    """Unique per process: two gateways on one host (or a restarted one) never share a name."""
    return f"{socket.gethostname()[:64]}-{os.getpid()}-{secrets.token_hex(3)}"


class JobLeases:
    def __init__(self, db: Database, replica_id: str, lease_s: float) -> None:
        self.db = db
        self.replica_id = replica_id
        self.lease_s = lease_s

    async def claim(self) -> str | None:
        """The oldest job nobody holds, now leased to this replica; None when there is none."""
        now = time.time()
        async with self.db.transaction() as tx:
            row = await tx.fetch_one(
                f"SELECT job_id FROM jobs WHERE {ACTIVE_SQL} "
                "AND (lease_expires_at IS NULL OR lease_expires_at < ?) "
                "ORDER BY created_at LIMIT 1" + self.db.skip_locked,
                (now,),
            )
            if row is None:
                return None
            await tx.execute(
                "UPDATE jobs SET lease_owner = ?, lease_expires_at = ? WHERE job_id = ?",
                (self.replica_id, now + self.lease_s, row["job_id"]),
            )
        return str(row["job_id"])

    async def renew(self, job_id: str) -> bool:
        """Extend the lease; False when this replica no longer holds an active job."""
        changed = await self.db.execute(
            f"UPDATE jobs SET lease_expires_at = ? WHERE job_id = ? AND lease_owner = ? AND {ACTIVE_SQL}",
            (time.time() + self.lease_s, job_id, self.replica_id),
        )
        return changed == 1

    async def holds(self, job_id: str) -> bool:
        """Still this replica's active job (the running worker asks every ``job_poll_s``)."""
        row = await self.db.fetch_one(
            f"SELECT 1 AS held FROM jobs WHERE job_id = ? AND lease_owner = ? AND {ACTIVE_SQL}",
            (job_id, self.replica_id),
        )
        return row is not None

    async def release_all(self) -> int:
        """On a clean shutdown: every job this replica held is free at once (not after expiry)."""
        return await self.db.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL "
            f"WHERE lease_owner = ? AND {ACTIVE_SQL}",
            (self.replica_id,),
        )

    def fence(self) -> tuple[str, tuple[str]]:
        """A condition (and its parameter) that ties a job statement to this replica's lease."""
        return "job_id IN (SELECT job_id FROM jobs WHERE lease_owner = ?)", (self.replica_id,)
