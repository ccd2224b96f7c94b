"""Signed webhooks with a persisted outbox and background delivery.

Registrations belong to their owner (no global URL that receives everyone's
results), each has its own secret, bodies are signed (HMAC-SHA256 over ``timestamp.body``),
delivery never delays the HTTP response, failures are retried with exponential backoff, and
the outbox lives in the database so a restart loses no delivery. Targets pass the SSRF guard at
registration and again before every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from gateway.errors import Forbidden, NotFound, Unprocessable
from gateway.ids import new_id
from gateway.service.db import Database, Transaction
from gateway.service.metrics import Metrics
from gateway.service.ssrf import UnsafeTarget, check_target, parse_allow_list, resolve_target
from gateway.service.webhook_http import AttemptFailed, build_client, post_pinned
from gateway.service.webhook_secrets import SecretDeriver
from gateway.settings import Settings

log = logging.getLogger("gateway.webhooks")

EventType = Literal["task_completed", "task_failed"]
EVENT_TYPES: tuple[str, ...] = ("task_completed", "task_failed")
SIGNATURE_HEADER = "X-Webhook-Signature"
#: the longest the delivery loop sleeps without a local wake-up (see deliver_due)
OUTBOX_POLL_S = 5.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, f"{timestamp}.{body}"); receivers recompute it."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookService:
    def __init__(self, db: Database, settings: Settings, metrics: Metrics) -> None:
        self.db = db
        self.settings = settings
        self.metrics = metrics
        self.allow = parse_allow_list(settings.webhook_allow_hosts)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._owner_load: dict[str, int] = {}
        self._secrets: SecretDeriver | None = None

    @property
    def secrets(self) -> SecretDeriver:
        if self._secrets is None:
            self._secrets = SecretDeriver.from_settings(self.settings)
        return self._secrets

    @property
    def enabled(self) -> bool:
        return self.settings.webhooks_enabled

    def _require_enabled(self) -> None:
        if not self.enabled:
            raise Forbidden("Webhooks are disabled on this server (webhooks_enabled=false).")

    async def register(self, owner: str, event_type: str, url: str) -> dict[str, str]:
        """Create or replace the owner's hook for one event; the secret is shown only here."""
        self._require_enabled()
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                await check_target(url, self.allow)
        except UnsafeTarget as error:
            raise Unprocessable(str(error)) from None
        except TimeoutError:
            raise Unprocessable("The webhook host did not resolve in time.") from None
        stored, secret = self.secrets.new()
        # The id survives a re-registration, so pending retries go to the new URL (signed with
        # the new secret) instead of being dropped as orphans.
        await self.db.execute(
            "INSERT INTO webhooks (id, owner, event_type, url, secret, created_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (owner, event_type) DO UPDATE SET url = excluded.url, secret = excluded.secret, "
            "created_at = excluded.created_at",
            (new_id(), owner, event_type, url, stored, time.time()),
        )
        return {"event_type": event_type, "url": url, "secret": secret}

    async def list(self, owner: str) -> dict[str, str]:
        rows = await self.db.fetch_all(
            "SELECT event_type, url FROM webhooks WHERE owner = ? ORDER BY event_type", (owner,)
        )
        return {row["event_type"]: row["url"] for row in rows}

    async def delete(self, owner: str, event_type: str) -> None:
        self._require_enabled()
        changed = await self.db.execute(
            "DELETE FROM webhooks WHERE owner = ? AND event_type = ?", (owner, event_type)
        )
        if not changed:
            raise NotFound(f"No webhook registered for {event_type!r}.")

    async def emit(
        self, owner: str, event_type: str, payload: dict[str, Any], *, tx: Transaction | None = None
    ) -> int:
        """Queue the event for the owner's registration (if any), stamped with an ISO-8601
        ``timestamp``; returns rows queued. With ``tx`` the rows join the caller's transaction
        (a job's final state and its event commit together) and the caller calls ``wake()``
        once it has committed."""
        if not self.enabled:
            return 0
        if tx is None:
            async with self.db.transaction() as own:
                queued = await self._queue_event(own, owner, event_type, payload)
            if queued:
                self.wake()
            return queued
        return await self._queue_event(tx, owner, event_type, payload)

    async def _queue_event(
        self, tx: Transaction, owner: str, event_type: str, payload: dict[str, Any]
    ) -> int:
        hooks = await tx.fetch_all(
            "SELECT id FROM webhooks WHERE owner = ? AND event_type = ?", (owner, event_type)
        )
        stamped = {"event": event_type, **payload, "timestamp": datetime.now(UTC).isoformat()}
        body = json.dumps(stamped, separators=(",", ":")).encode()
        now = time.time()
        for hook in hooks:
            await tx.execute(
                "INSERT INTO outbox (id, webhook_id, event_type, body, state, next_attempt_at, "
                "created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                (new_id(), hook["id"], event_type, body, now, now),
            )
        return len(hooks)

    def wake(self) -> None:
        """Look at the outbox now (an event was committed)."""
        self._wake.set()

    # -- delivery ---------------------------------------------------------------------------
    # The loop never waits for an attempt: each runs as its own task under one deadline, at most
    # ``webhook_owner_concurrency`` per owner and ``webhook_concurrency`` in all, and its row is
    # leased (next_attempt_at pushed past the deadline) so it is not picked twice.

    async def start(self) -> None:
        self._client = build_client()
        self._task = asyncio.create_task(self._run(), name="webhook-delivery")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._inflight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before the query: a wake-up during it is not lost
            try:
                delay = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook delivery loop error")
                delay = 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def deliver_due(self) -> float:
        """Start every due delivery that has a free slot; returns seconds until the next is due."""
        now = time.time()
        rows = await self.db.fetch_all(
            "SELECT o.id, o.event_type, o.body, o.attempts, w.url, w.secret, w.owner FROM outbox o "
            "LEFT JOIN webhooks w ON w.id = o.webhook_id "
            "WHERE o.state = 'pending' AND o.next_attempt_at <= ? ORDER BY o.next_attempt_at LIMIT 256",
            (now,),
        )
        lease_until = now + self.settings.webhook_timeout_s + 30.0
        for row in rows:
            owner = row["owner"] or ""
            if row["id"] in self._inflight or len(self._inflight) >= self.settings.webhook_concurrency:
                continue
            if self._owner_load.get(owner, 0) >= self.settings.webhook_owner_concurrency:
                continue  # this owner's receivers are busy; others' deliveries go ahead
            # the claim: only one replica moves a due row past its deadline (the others skip it)
            claimed = await self.db.execute(
                "UPDATE outbox SET next_attempt_at = ? "
                "WHERE id = ? AND state = 'pending' AND next_attempt_at <= ?",
                (lease_until, row["id"], now),
            )
            if not claimed:
                continue
            self._owner_load[owner] = self._owner_load.get(owner, 0) + 1
            task = asyncio.create_task(self._attempt_and_release(row, owner), name="webhook-attempt")
            self._inflight[row["id"]] = task
        upcoming = await self.db.fetch_one(
            "SELECT MIN(next_attempt_at) AS due FROM outbox WHERE state = 'pending'"
        )
        due = upcoming["due"] if upcoming else None
        # at most OUTBOX_POLL_S asleep: rows another replica queued (or left when it died) are
        # seen without a wake-up from this process
        return OUTBOX_POLL_S if due is None else min(OUTBOX_POLL_S, max(0.05, due - time.time()))

    async def _attempt_and_release(self, row: dict[str, Any], owner: str) -> None:
        try:
            await self._attempt(row)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook attempt crashed", extra={"delivery": row["id"]})
        finally:
            self._inflight.pop(row["id"], None)
            self._owner_load[owner] -= 1
            if not self._owner_load[owner]:
                del self._owner_load[owner]
            self._wake.set()

    async def _attempt(self, row: dict[str, Any]) -> None:
        if row["url"] is None:  # registration deleted: its owner no longer wants deliveries
            await self._finish(row["id"], "dropped", "webhook registration was deleted")
            return
        attempts = row["attempts"] + 1
        timestamp = str(int(time.time()))
        body = bytes(row["body"])
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "mlsharp-gateway-webhooks/1",
            "X-Webhook-Event": row["event_type"],
            "X-Webhook-Timestamp": timestamp,
            "X-Webhook-Id": row["id"],
            SIGNATURE_HEADER: sign(self.secrets.reveal(row["secret"]), timestamp, body),
        }
        budget = self.settings.webhook_timeout_s  # one deadline: name resolution included
        started = time.monotonic()
        try:
            try:
                async with asyncio.timeout(budget):
                    target = await resolve_target(row["url"], self.allow)
            except TimeoutError:
                raise AttemptFailed(f"the host did not resolve within {budget:g} s") from None
            assert self._client is not None
            left = max(0.001, budget - (time.monotonic() - started))
            status = await post_pinned(self._client, target, body, headers, left)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except UnsafeTarget as unsafe:
            self.metrics.webhook_deliveries.labels("refused").inc()
            await self._finish(row["id"], "failed", str(unsafe), attempts)
            return
        except AttemptFailed as failure:
            error = str(failure)
        if error is None:
            self.metrics.webhook_deliveries.labels("delivered").inc()
            await self._finish(row["id"], "delivered", None, attempts)
            return
        self.metrics.webhook_deliveries.labels("retry").inc()
        if attempts >= self.settings.webhook_max_attempts:
            await self._finish(row["id"], "failed", error, attempts)
            log.warning("webhook delivery gave up", extra={"delivery": row["id"], "error": error})
            return
        backoff = min(
            self.settings.webhook_backoff_max_s, self.settings.webhook_backoff_s * 2 ** (attempts - 1)
        )
        backoff *= 1 + random.uniform(0, 0.1)
        await self.db.execute(
            "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
            (attempts, time.time() + backoff, error, row["id"]),
        )

    async def _finish(self, delivery_id: str, state: str, error: str | None, attempts: int = 0) -> None:
        await self.db.execute(
            f"UPDATE outbox SET state = ?, last_error = ?, attempts = {self.db.greatest}(attempts, ?), "
            "delivered_at = ? "
            "WHERE id = ?",
            (state, error, attempts, time.time(), delivery_id),
        )

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self.db.fetch_all("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
        return {row["state"]: row["n"] for row in rows}
