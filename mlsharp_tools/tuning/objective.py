"""Measured points and how ``mlsharp tune`` picks the winner among them.

Why a tie tolerance: two configs a percent apart in throughput are the same within run-to-run
noise on a shared machine, and then the one that holds fewer resources (smaller batches, fewer
instances, shorter queue delay) is the better deployment. ``tie_percent=0`` makes ties exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from mlsharp_tools.tuning.space import Candidate, NoResultError, TuneError

ObjectiveKind = Literal["throughput", "latency"]


@dataclass(frozen=True)
class Point:
    """One (candidate, concurrency) measurement: client view plus the batches Triton formed."""

    candidate: int
    concurrency: int
    throughput_infer_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    #: ``sharp`` executions per batch size within the window (perf_analyzer's warm-up included)
    sharp_batches: Mapping[int, int] = field(default_factory=dict)
    #: False when perf_analyzer found no stable window and the point was re-measured without the check
    stable: bool = True

    def to_json(self) -> dict[str, Any]:
        """JSON with string keys for the batch histogram."""
        values = asdict(self)
        values["sharp_batches"] = {str(size): count for size, count in sorted(self.sharp_batches.items())}
        return values

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> Point:
        """Inverse of :meth:`to_json`."""
        batches = {int(size): int(count) for size, count in values.get("sharp_batches", {}).items()}
        return cls(**{**values, "sharp_batches": batches})


@dataclass(frozen=True)
class Objective:
    """Maximise throughput, optionally only among points whose p95 stays within a bound."""

    kind: ObjectiveKind = "throughput"
    p95_bound_ms: float | None = None
    tie_percent: float = 2.0

    def __post_init__(self) -> None:
        if self.kind == "latency" and (self.p95_bound_ms is None or self.p95_bound_ms <= 0):
            raise TuneError("--objective latency needs --p95-ms BOUND (a positive number of milliseconds)")
        if self.kind == "throughput" and self.p95_bound_ms is not None:
            raise TuneError("--p95-ms goes with --objective latency")
        if not 0 <= self.tie_percent < 100:
            raise TuneError("--tie-percent must be in [0, 100)")

    def describe(self) -> str:
        """One line for the table and the messages."""
        if self.kind == "latency":
            return f"max throughput with p95 <= {self.p95_bound_ms:g} ms"
        return "max throughput (inferences/s)"

    def to_json(self) -> dict[str, Any]:
        """Part of the cache key and of tuning.json."""
        return asdict(self)

    def admits(self, point: Point) -> bool:
        """Whether a point satisfies the bound (always, for plain throughput)."""
        return self.p95_bound_ms is None or point.p95_ms <= self.p95_bound_ms


class BoundNotMetError(NoResultError):
    """No measured point kept its p95 within the bound."""

    code = "bound_not_met"


def select(points: Sequence[Point], candidates: Mapping[int, Candidate], objective: Objective) -> Point:
    """The winning point: best throughput among admitted points; near-ties go to fewer resources,
    then to the lower concurrency (the same throughput at lower latency)."""
    if not points:
        raise NoResultError("no candidate produced a measurement; nothing was written (see the errors above)")
    admitted = [p for p in points if objective.admits(p)]
    if not admitted:
        best = min(points, key=lambda p: p.p95_ms)
        raise BoundNotMetError(
            f"no config kept p95 <= {objective.p95_bound_ms:g} ms; the best p95 seen was "
            f"{best.p95_ms:.1f} ms (candidate {best.candidate}, concurrency {best.concurrency}, "
            f"{best.throughput_infer_s:.3f} infer/s). Nothing was written: raise --p95-ms or widen the space."
        )
    top = max(p.throughput_infer_s for p in admitted)
    floor = top * (1.0 - objective.tie_percent / 100.0)
    tied = [p for p in admitted if p.throughput_infer_s >= floor]

    def order(point: Point) -> tuple[object, ...]:
        resources = candidates[point.candidate].resources()
        return (resources, point.concurrency, -point.throughput_infer_s, point.candidate)

    return min(tied, key=order)
