"""Admission for cache hits: they skip the backend, not the server's capacity.

A hit costs no inference but still a full result write (until results are stored once), so a
flood of tiny repeated uploads used to bypass ``max_in_flight``/``max_queue`` entirely. A hit now
counts against the same capacity as inferences (running + waiting + hits being served), without
waiting behind an inference slot; ``wait=True`` (async jobs, already queued in SQLite) is never
refused, as for inferences.

With a limits Redis (gateway/backends/admission_shared.py) the backend's load is global and the
hits of the other replicas come with it (``hits_elsewhere``, one heartbeat old); this replica's
own count is reported to the backend for them (``report_hits``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from gateway.backends import InferenceBackend
from gateway.errors import Overloaded


class HitAdmission:
    def __init__(self, backend: InferenceBackend, retry_after_s: int) -> None:
        self.backend = backend
        self.retry_after_s = retry_after_s
        self.active = 0

    def check(self, *, wait: bool) -> None:
        """Refuse a hit (429) when inferences and hits in progress fill the capacity."""
        if wait:
            return
        load = self.backend.load()
        capacity = load["max_in_flight"] + load["max_queue"]
        busy = load["in_flight"] + load["waiting"] + self.active + load.get("hits_elsewhere", 0)
        if busy >= capacity:
            raise Overloaded(
                f"The server is busy: {load['in_flight']} predictions running, {load['waiting']} waiting "
                f"and {self.active} cached results being stored. Retry later.",
                retry_after_s=self.retry_after_s,
            )

    @contextmanager
    def hold(self, cached: bool) -> Iterator[None]:
        """Count a hit as busy while its result is written."""
        if not cached:
            yield
            return
        self.active += 1
        self._report()
        try:
            yield
        finally:
            self.active -= 1
            self._report()

    def _report(self) -> None:
        report = getattr(self.backend, "report_hits", None)
        if report is not None:
            report(self.active)
