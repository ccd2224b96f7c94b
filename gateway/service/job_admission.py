"""Queue limits for async jobs, checked and applied in the same transaction as the insert.

The count and the insert used to be separate awaits, so concurrent submissions all saw room
(``job_max_queued=1`` let three in). Here both run inside one ``Database.transaction()``. With
auth on, one principal may also hold only ``job_owner_share`` of the queue, so a single client
cannot fill it for everyone.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.errors import Overloaded
from gateway.service.db import Database
from gateway.settings import Settings

ACTIVE_SQL = "SELECT COUNT(*) AS n FROM jobs WHERE state IN ('queued', 'running')"


def owner_limit(settings: Settings) -> int | None:
    """Active jobs one owner may hold; None when auth is off (every caller is one principal)."""
    if not settings.auth_enabled:
        return None
    return max(1, math.floor(settings.job_max_queued * settings.job_owner_share))


def _refuse(message: str, settings: Settings) -> Overloaded:
    return Overloaded(message, retry_after_s=settings.retry_after_s)


async def insert_within_limits(
    db: Database, settings: Settings, owner: str, statements: list[tuple[str, tuple[Any, ...]]]
) -> None:
    """Run the job's insert statements only if the global and per-owner limits allow it."""
    per_owner = owner_limit(settings)
    async with db.transaction() as tx:
        await tx.serialize("job-admission")  # replicas count and insert one after another
        total = await tx.fetch_one(ACTIVE_SQL)
        if total is not None and total["n"] >= settings.job_max_queued:
            raise _refuse(f"{settings.job_max_queued} jobs are already queued; retry later.", settings)
        if per_owner is not None:
            mine = await tx.fetch_one(ACTIVE_SQL + " AND owner = ?", (owner,))
            if mine is not None and mine["n"] >= per_owner:
                raise _refuse(
                    f"You already have {mine['n']} jobs queued or running, this client's share of the "
                    f"queue ({per_owner}); retry when one has finished.",
                    settings,
                )
        for sql, params in statements:
            await tx.execute(sql, params)
