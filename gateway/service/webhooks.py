"""Signed webhooks with a persisted outbox and background delivery.

Fixes the seed: registrations belong to their owner (no global URL that receives everyone's
results), each has its own secret, bodies are signed (HMAC-SHA256 over ``timestamp.body``),
delivery never delays the HTTP response, failures are retried with exponential backoff, and
the outbox lives in SQLite so a restart loses no delivery. Targets pass the SSRF guard at
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
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from gateway.errors import Forbidden, NotFound, Unprocessable
from gateway.ids import new_id
from gateway.service.db import Database
from gateway.service.metrics import Metrics
from gateway.service.ssrf import UnsafeTarget, check_target, parse_allow_list
from gateway.settings import Settings

log = logging.getLogger("gateway.webhooks")

EventType = Literal["task_completed", "task_failed"]
EVENT_TYPES: tuple[str, ...] = ("task_completed", "task_failed")
SIGNATURE_HEADER = "X-Webhook-Signature"


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
            await check_target(url, self.allow)
        except UnsafeTarget as error:
            raise Unprocessable(str(error)) from None
        secret = secrets.token_urlsafe(32)
        await self.db.execute(
            "INSERT INTO webhooks (id, owner, event_type, url, secret, created_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (owner, event_type) DO UPDATE SET url = excluded.url, secret = excluded.secret, "
            "id = excluded.id, created_at = excluded.created_at",
            (new_id(), owner, event_type, url, secret, time.time()),
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

    async def emit(self, owner: str, event_type: str, payload: dict[str, Any]) -> int:
        """Queue the event for the owner's registration (if any), stamped with an ISO-8601
        ``timestamp``; returns rows queued."""
        if not self.enabled:
            return 0
        hooks = await self.db.fetch_all(
            "SELECT id FROM webhooks WHERE owner = ? AND event_type = ?", (owner, event_type)
        )
        stamped = {"event": event_type, **payload, "timestamp": datetime.now(UTC).isoformat()}
        body = json.dumps(stamped, separators=(",", ":")).encode()
        now = time.time()
        await self.db.execute_many(
            [
                (
                    "INSERT INTO outbox (id, webhook_id, event_type, body, state, next_attempt_at, "
                    "created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                    (new_id(), hook["id"], event_type, body, now, now),
                )
                for hook in hooks
            ]
        )
        if hooks:
            self._wake.set()
        return len(hooks)

    # -- delivery ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False, timeout=self.settings.webhook_timeout_s)
        self._task = asyncio.create_task(self._run(), name="webhook-delivery")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            try:
                delay = await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook delivery loop error")
                delay = 5.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def deliver_due(self) -> float:
        """Attempt every due delivery once; returns seconds until the next one is due."""
        now = time.time()
        rows = await self.db.fetch_all(
            "SELECT o.id, o.event_type, o.body, o.attempts, w.url, w.secret FROM outbox o "
            "LEFT JOIN webhooks w ON w.id = o.webhook_id "
            "WHERE o.state = 'pending' AND o.next_attempt_at <= ? ORDER BY o.next_attempt_at LIMIT 32",
            (now,),
        )
        await asyncio.gather(*(self._attempt(row) for row in rows))
        upcoming = await self.db.fetch_one(
            "SELECT MIN(next_attempt_at) AS due FROM outbox WHERE state = 'pending'"
        )
        due = upcoming["due"] if upcoming else None
        return 30.0 if due is None else min(30.0, max(0.05, due - time.time()))

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
            SIGNATURE_HEADER: sign(row["secret"], timestamp, body),
        }
        try:
            await check_target(row["url"], self.allow)
            assert self._client is not None
            response = await self._client.post(row["url"], content=body, headers=headers)
            error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        except UnsafeTarget as unsafe:
            self.metrics.webhook_deliveries.labels("refused").inc()
            await self._finish(row["id"], "failed", str(unsafe), attempts)
            return
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:300]
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
            "UPDATE outbox SET state = ?, last_error = ?, attempts = MAX(attempts, ?), delivered_at = ? "
            "WHERE id = ?",
            (state, error, attempts, time.time(), delivery_id),
        )

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self.db.fetch_all("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
        return {row["state"]: row["n"] for row in rows}
