"""Async jobs: one or many images, persisted in the database, processed by background workers.

Inputs are stored before the 202 is returned, so a restarted gateway (or another replica) resumes
every queued or running job from its first unfinished file. Workers on every replica claim jobs
with a lease (``job_leases``): one job runs on one replica at a time. Results expire
``results_ttl_s`` after the job ends. Cancelling is a state change in the database: the replica
running the job sees it within ``job_poll_s``, stops between files and abandons the inference in
flight. A job's final state and its webhook event commit in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from gateway.errors import BackendUnavailable, Conflict, GatewayError, NotFound, Overloaded, RateLimited
from gateway.ids import is_valid_id, new_id
from gateway.logs import request_id_var
from gateway.service.auth import Principal
from gateway.service.db import Database, Transaction
from gateway.service.inputs import PredictParams
from gateway.service.job_admission import insert_within_limits
from gateway.service.job_leases import JobLeases, LeaseLost, default_replica_id
from gateway.service.job_rows import ACTIVE, JobFileRow, JobRow, JobState
from gateway.service.predict import PredictService, SceneResult
from gateway.service.renders import RenderSpec, store_renders
from gateway.service.storage import ResultStore
from gateway.service.webhooks import WebhookService
from gateway.settings import Settings
from mlsharp.errors import MLSharpError

log = logging.getLogger("gateway.jobs")

BACKEND_RETRIES = 8


def input_name(idx: int) -> str:
    return f"inputs/{idx}.bin"


class JobService:
    def __init__(
        self,
        db: Database,
        store: ResultStore,
        predict: PredictService,
        webhooks: WebhookService,
        settings: Settings,
    ) -> None:
        self.db = db
        self.store = store
        self.predict = predict
        self.webhooks = webhooks
        self.settings = settings
        self.leases = JobLeases(db, settings.replica_id or default_replica_id(), settings.job_lease_s)
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._tick = 0
        self._workers: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self.backend_retry_s = 5.0

    @property
    def replica_id(self) -> str:
        return self.leases.replica_id

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> int:
        """Start the workers; returns how many jobs are waiting (a previous process's included:
        they are claimed like any other once their lease is free)."""
        waiting = await self.active_count()
        self._workers = [
            asyncio.create_task(self._work(), name=f"job-worker-{n}")
            for n in range(self.settings.job_workers)
        ]
        if waiting:
            log.info("jobs waiting at start", extra={"jobs": waiting, "replica": self.replica_id})
        return waiting

    async def close(self) -> None:
        """Stop the workers and free this replica's leases, so another resumes at once."""
        self._stopping = True
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        try:
            await self.leases.release_all()
        except Exception:
            log.exception("releasing job leases failed; they expire in %.0f s", self.settings.job_lease_s)

    async def active_count(self) -> int:
        row = await self.db.fetch_one("SELECT COUNT(*) AS n FROM jobs WHERE state IN ('queued', 'running')")
        return int(row["n"]) if row else 0

    # -- API operations ---------------------------------------------------------------------

    async def submit(
        self,
        owner: str,
        uploads: list[tuple[str, str, bytes]],
        formats: tuple[str, ...],
        focal_px: float | None,
        focal_mm: float | None,
        base_url: str,
        render: bool = False,
    ) -> str:
        """Persist inputs and the job, then wake a worker; ``uploads`` are (filename, stem, bytes)."""
        if await self.active_count() >= self.settings.job_max_queued:
            raise Overloaded(
                f"{self.settings.job_max_queued} jobs are already queued; retry later.",
                retry_after_s=self.settings.retry_after_s,
            )
        job_id = new_id()
        await self.store.write(job_id, {input_name(i): data for i, (_, _, data) in enumerate(uploads)})
        now = time.time()
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (
                "INSERT INTO jobs (job_id, owner, state, formats, focal_px, focal_mm, created_at, "
                "updated_at, base_url, render) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    owner,
                    json.dumps(list(formats)),
                    focal_px,
                    focal_mm,
                    now,
                    now,
                    base_url,
                    int(render),
                ),
            )
        ]
        statements += [
            (
                "INSERT INTO job_files (job_id, idx, filename, stem, state) VALUES (?, ?, ?, ?, 'pending')",
                (job_id, idx, filename[:200], stem),
            )
            for idx, (filename, stem, _) in enumerate(uploads)
        ]
        try:
            await insert_within_limits(self.db, self.settings, owner, statements)
        except Overloaded:
            await self.store.delete(job_id)  # lost the race for the last queue place
            raise
        self._wake.set()
        log.info("job queued", extra={"job_id": job_id, "files": len(uploads), "formats": list(formats)})
        return job_id

    async def _row(self, job_id: str) -> JobRow | None:
        row = await self.db.fetch_one("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        return None if row is None else JobRow.from_row(row)

    async def _files(self, job_id: str) -> tuple[JobFileRow, ...]:
        rows = await self.db.fetch_all("SELECT * FROM job_files WHERE job_id = ? ORDER BY idx", (job_id,))
        return tuple(JobFileRow.from_row(row) for row in rows)

    async def get(self, job_id: str, principal: Principal) -> JobRow:
        """The job row plus its files, or NotFound (also for another owner's job)."""
        row = (
            await self.db.fetch_one("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
            if is_valid_id(job_id)
            else None
        )
        if row is None or (row["owner"] != principal.name and "admin" not in principal.scopes):
            raise NotFound("No such job.")
        return JobRow.from_row(row, await self._files(job_id))

    async def cancel(self, job_id: str, principal: Principal) -> JobRow:
        """Any replica may cancel: the state changes here, the replica running it stops."""
        await self.get(job_id, principal)
        async with self.db.transaction() as tx:
            changed = await self._end(tx, job_id, "cancelled", None, holder=None)
            if changed:
                await tx.execute(
                    "UPDATE job_files SET state = 'cancelled' "
                    "WHERE job_id = ? AND state IN ('pending', 'running')",
                    (job_id,),
                )
                await self._announce(tx, job_id, "cancelled", "cancelled by the client")
        if changed:
            self.webhooks.wake()
            running = self._running.get(job_id)
            if running is not None:
                running.cancel()
            await self._notify()
            log.info("job cancelled", extra={"job_id": job_id})
        return await self.get(job_id, principal)

    async def archive(self, job_id: str, principal: Principal) -> tuple[str, str]:
        job = await self.get(job_id, principal)
        if not job.terminal:
            raise Conflict("The job has not finished yet; the archive is built when it ends.")
        members = [name for f in job.files for name in f.outputs.values()]
        if not members:
            raise NotFound("The job produced no files.")
        return job_id, await self.store.archive(job_id, members)

    async def watch(self, job_id: str, principal: Principal) -> AsyncIterator[JobRow]:
        """Yield the job each time it changes until it ends (keep-alives are the SSE layer's).

        Changes made here wake the stream at once; another replica's are read by polling, at
        most every 0.5 s (``job_poll_s`` if smaller).
        """
        poll_s = min(0.5, self.settings.job_poll_s)
        seen = -1
        while True:
            tick = self._tick  # read before the row, so a change in between is never missed
            job = await self.get(job_id, principal)
            if job.version != seen:
                seen = job.version
                yield job
            if job.terminal:
                return
            async with self._changed:
                if self._tick != tick:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=poll_s)

    # -- workers ----------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._tick += 1
            self._changed.notify_all()

    async def _work(self) -> None:
        while True:
            self._wake.clear()  # before the claim: a submit during it is not lost
            try:
                job_id = await self.leases.claim()
            except Exception:
                log.exception("claiming a job failed")
                job_id = None
            if job_id is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.job_poll_s)
                continue
            await self._run_claimed(job_id)

    async def _run_claimed(self, job_id: str) -> None:
        task = asyncio.create_task(self._process(job_id), name=f"job-{job_id[:8]}")
        self._running[job_id] = task
        keeper = asyncio.create_task(self._keep_lease(job_id, task), name=f"lease-{job_id[:8]}")
        try:
            await task
        except (asyncio.CancelledError, LeaseLost):
            if self._stopping:
                raise  # shutting down: the job stays queued/running; close() frees its lease
            log.info("job left to its new state or owner", extra={"job_id": job_id})
        except Exception:
            log.exception("job crashed", extra={"job_id": job_id})
            await self._finish(job_id, "failed", "internal error while processing the job")
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            self._running.pop(job_id, None)

    async def _keep_lease(self, job_id: str, task: asyncio.Task[None]) -> None:
        """Renew the lease every third of it; stop the job once it is no longer ours (cancelled
        on any replica, or taken over after this one stalled)."""
        renew_every_s = self.settings.job_lease_s / 3
        renewed = time.monotonic()
        while not task.done():
            await asyncio.sleep(min(self.settings.job_poll_s, renew_every_s))
            try:
                if time.monotonic() - renewed >= renew_every_s:
                    held = await self.leases.renew(job_id)
                    renewed = time.monotonic()
                else:
                    held = await self.leases.holds(job_id)
            except Exception:
                log.exception("checking the job's lease failed", extra={"job_id": job_id})
                continue
            if not held:
                task.cancel()
                await self._notify()
                return

    async def _fenced_update(self, job_id: str, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Statements about the job that apply only while this replica holds it."""
        fence, fence_params = self.leases.fence()
        async with self.db.transaction() as tx:
            held = await tx.fetch_one(
                f"SELECT 1 AS held FROM jobs WHERE job_id = ? AND {fence} AND state IN ('queued', 'running')",
                (job_id, *fence_params),
            )
            if held is None:
                raise LeaseLost(job_id)
            for sql, params in statements:
                await tx.execute(sql, params)
        await self._notify()

    async def _process(self, job_id: str) -> None:
        request_id_var.set(f"job:{job_id}")
        job = await self._row(job_id)
        if job is None or job.state not in ACTIVE:
            return
        await self._fenced_update(
            job_id,
            [
                (
                    "UPDATE jobs SET state = 'running', updated_at = ?, version = version + 1 "
                    "WHERE job_id = ?",
                    (time.time(), job_id),
                )
            ],
        )
        for file in await self._files(job_id):
            if file.state in ("pending", "running"):
                await self._process_file(job, file.idx, file.stem)
        files = await self._files(job_id)
        done = sum(file.state == "done" for file in files)
        if done == len(files):
            await self._finish(job_id, "completed", None)
        elif done:
            await self._finish(job_id, "partial", None)
        else:
            await self._finish(job_id, "failed", "every file failed")

    async def _set_file(self, job_id: str, idx: int, assignments: str, params: tuple[Any, ...]) -> None:
        """Change one file's row and bump the job's version together, so watchers see it."""
        await self._fenced_update(
            job_id,
            [
                (f"UPDATE job_files SET {assignments} WHERE job_id = ? AND idx = ?", (*params, job_id, idx)),
                (
                    "UPDATE jobs SET version = version + 1, updated_at = ? WHERE job_id = ?",
                    (time.time(), job_id),
                ),
            ],
        )

    async def _process_file(self, job: JobRow, idx: int, stem: str) -> None:
        job_id, formats = job.job_id, job.formats
        await self._set_file(job_id, idx, "state = 'running', stage = 'inference'", ())
        image = await self.store.read(job_id, input_name(idx))
        start = time.perf_counter()
        try:
            # ONE inference (or cache hit) for every format of this image, referenced, not copied
            params = PredictParams(formats, job.focal_px, job.focal_mm)
            result = await self._infer_with_retry(image, params, job.owner)
            outputs = await self.predict.link_outputs(result, formats, job_id, f"{idx:02d}_{stem}")
            if job.render:  # the scene is downloadable while its pictures are made
                await self._set_file(job_id, idx, "stage = 'render', outputs = ?", (json.dumps(outputs),))
                spec = RenderSpec.from_settings(self.settings)
                scenes = self.predict.scenes
                outputs |= await store_renders(self.store, scenes, result.key, job_id, idx, stem, spec)
        except (MLSharpError, GatewayError) as error:
            await self._set_file(
                job_id,
                idx,
                "state = 'failed', stage = NULL, error = ?, error_code = ?",
                (str(error), error.code),
            )
            return
        elapsed = round(time.perf_counter() - start, 3)
        await self._set_file(
            job_id,
            idx,
            "state = 'done', stage = NULL, outputs = ?, processing_time = ?",
            (json.dumps(outputs), elapsed),
        )

    async def _infer_with_retry(self, image: bytes, params: PredictParams, owner: str) -> SceneResult:
        """Jobs wait out a restarting backend instead of failing (bounded retries)."""
        for attempt in range(BACKEND_RETRIES):
            try:
                return await self.predict.infer(image, params, wait=True, owner=owner)
            except (BackendUnavailable, RateLimited):
                if attempt == BACKEND_RETRIES - 1:
                    raise
                await asyncio.sleep(min(60.0, self.backend_retry_s * 2**attempt))
        raise AssertionError("unreachable")

    async def _finish(self, job_id: str, state: JobState, error: str | None) -> None:
        """The final state and its webhook event, in one transaction, only while this replica
        holds the job."""
        async with self.db.transaction() as tx:
            changed = await self._end(tx, job_id, state, error, holder=self.replica_id)
            if changed:
                await self._announce(tx, job_id, state, error)
        await self._notify()
        if changed:
            self.webhooks.wake()
            log.info("job finished", extra={"job_id": job_id, "state": state})

    async def _end(
        self, tx: Transaction, job_id: str, state: JobState, error: str | None, *, holder: str | None
    ) -> bool:
        """Move an active job to its final ``state`` in ``tx`` and free its lease; with
        ``holder``, only while that replica holds it (a cancel needs no lease). True if it moved."""
        now = time.time()
        fence, fence_params = (" AND lease_owner = ?", (holder,)) if holder else ("", ())
        changed = await tx.execute(
            "UPDATE jobs SET state = ?, error = ?, finished_at = ?, expires_at = ?, updated_at = ?, "
            "version = version + 1, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE job_id = ? AND state IN ('queued', 'running')" + fence,
            (state, error, now, now + self.settings.results_ttl_s, now, job_id, *fence_params),
        )
        return changed > 0

    async def _announce(self, tx: Transaction, job_id: str, state: JobState, error: str | None) -> None:
        """The webhook event for a job that just ended (cancelled counts as failed), queued in
        the caller's transaction."""
        row = await tx.fetch_one("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        if row is None:
            return
        job = JobRow.from_row(row)
        now = time.time()
        payload: dict[str, Any] = {"task_id": job_id, "status": state}
        if state in ("failed", "cancelled"):
            failure = {**payload, "error": error or "failed"}
            await self.webhooks.emit(job.owner, "task_failed", failure, tx=tx)
        else:
            url = f"{job.base_url.rstrip('/')}/v1/jobs/{job_id}"
            payload |= {"url": url, "processing_time": round(now - job.created_at, 3)}
            await self.webhooks.emit(job.owner, "task_completed", payload, tx=tx)
