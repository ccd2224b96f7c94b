"""Measure each candidate: scratch repository, real tritonserver, perf_analyzer on the ensemble.

Why scratch repositories: the real repository must stay exactly as it was until a winner is known
(a crash or Ctrl-C mid-sweep leaves it untouched), while each candidate needs its own configs. A
scratch directory beside the repository gets the generated configs and hard links to the model
files (the full model's 2.6 GB is never copied; symlinks where hard links are impossible).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlsharp.triton.models import ENSEMBLE, SHARP
from mlsharp.triton.repository import write_configs
from mlsharp.triton.server import TritonServer, TritonStartError
from mlsharp_tools.perf import run as perf_run
from mlsharp_tools.perf.run import Measurement, PerfRunError, RunSettings
from mlsharp_tools.perf.tool import PerfAnalyzer
from mlsharp_tools.tuning.objective import Point
from mlsharp_tools.tuning.report import batches_text, label
from mlsharp_tools.tuning.space import Candidate, NoResultError

MeasureFn = Callable[..., Measurement]
Echo = Callable[[str], None]
#: lines of a server log or perf_analyzer output shown in a message (the full log path is given)
TAIL_LINES = 15


@dataclass(frozen=True)
class SweepSettings:
    """How each candidate is measured and how much of the space may be measured."""

    run: RunSettings
    protocol: str = "grpc"
    max_candidates: int | None = None
    time_budget_s: float | None = None
    startup_timeout_s: float = 600.0
    #: where scratch repositories go (default: beside the repository, so that hard links work)
    scratch_parent: Path | None = None


@dataclass
class CandidateRun:
    """What one candidate produced: points, or the error that stopped it (points kept so far)."""

    candidate: Candidate
    points: list[Point] = field(default_factory=list)
    error: str | None = None
    log_dir: Path | None = None
    seconds: float = 0.0


@dataclass
class SweepResult:
    """All candidate runs, the candidates skipped with the reason, and the server's version."""

    runs: list[CandidateRun]
    skipped: list[tuple[Candidate, str]]
    server_version: str | None = None

    @property
    def points(self) -> list[Point]:
        """Every successful measurement."""
        return [point for run in self.runs for point in run.points]


class SweepAbortedError(NoResultError):
    """The first candidates all failed: the cause is not the candidate (broken tool or repository)."""


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem or no hard links allowed: a symlink still copies nothing
        target.symlink_to(source.resolve())


def link_model_files(source: Path, dest: Path) -> int:
    """Link every file in the version directories of ``source``'s models into ``dest``; returns the
    number of files. Configs are not linked (they are generated per candidate)."""
    count = 0
    for model_dir in sorted(p for p in source.iterdir() if (p / "config.pbtxt").is_file()):
        for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            (dest / model_dir.name / version_dir.name).mkdir(parents=True, exist_ok=True)
            for path in sorted(version_dir.rglob("*")):
                if "__pycache__" in path.parts:
                    continue
                target = dest / path.relative_to(source)
                if path.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    _link(path, target)
                    count += 1
    return count


def server_version(http_url: str) -> str | None:
    """``GET /v2``'s version (None if unreadable)."""
    with (
        contextlib.suppress(OSError, ValueError),
        urllib.request.urlopen(f"http://{http_url}/v2", timeout=10) as response,
    ):
        return str(json.load(response).get("version"))
    return None


def _is_unstable(error: PerfRunError) -> bool:
    return "Failed to obtain stable measurement" in str(error)


def to_point(candidate: int, measurement: Measurement, *, stable: bool = True) -> Point:
    """The tuner's view of one perf_analyzer run."""
    sharp = next((stage for stage in measurement.stages if stage.model == SHARP), None)
    return Point(
        candidate=candidate,
        concurrency=measurement.concurrency,
        throughput_infer_s=measurement.throughput,
        p50_ms=measurement.p50_ms,
        p95_ms=measurement.p95_ms,
        p99_ms=measurement.p99_ms,
        sharp_batches=dict(sharp.batches) if sharp else {},
        stable=stable,
    )


@dataclass
class _Context:
    repository: Path
    settings: SweepSettings
    tool: PerfAnalyzer
    input_data: Path
    log_dir: Path
    measure: MeasureFn
    echo: Echo
    version: str | None = None


def _measure_level(
    ctx: _Context, run: CandidateRun, server: TritonServer, url: str, level: int
) -> tuple[Measurement, bool]:
    """One perf_analyzer run; when it finds no stable window, one more run that accepts any window
    (marked unstable) instead of losing the level."""
    settings = ctx.settings.run
    assert run.log_dir is not None  # _measure_candidate gives every run its directory
    for attempt in (settings, dataclasses.replace(settings, stability_percentage=999, max_trials=3)):
        try:
            measurement = ctx.measure(
                ctx.tool,
                model=ENSEMBLE,
                protocol=ctx.settings.protocol,
                url=url,
                stats_url=server.http_url,
                input_data=ctx.input_data,
                concurrency=level,
                work_dir=run.log_dir / "perf",
                settings=attempt,
            )
            return measurement, attempt is settings
        except PerfRunError as error:
            if attempt is not settings or settings.stability_percentage >= 999 or not _is_unstable(error):
                raise
            ctx.echo(
                f"    c={level}: no stable window within {settings.max_trials} trials; "
                "measuring once more without the stability check"
            )
    raise AssertionError("unreachable")


def _measure_candidate(ctx: _Context, candidate: Candidate) -> CandidateRun:
    """Scratch repository -> server -> one perf_analyzer run per concurrency level -> cleanup."""
    log_dir = ctx.log_dir / f"candidate-{candidate.index:02d}"
    run = CandidateRun(candidate, log_dir=log_dir)
    parent = ctx.settings.scratch_parent or ctx.repository.parent
    scratch = Path(tempfile.mkdtemp(prefix=f".{ctx.repository.name}-tune-", dir=parent))
    try:
        link_model_files(ctx.repository, scratch)
        write_configs(scratch, candidate.options)
        log_path = log_dir / "tritonserver.log"
        server = TritonServer(scratch, log_path=log_path, startup_timeout_s=ctx.settings.startup_timeout_s)
        try:
            server.start()
        except TritonStartError as error:
            run.error = f"tritonserver did not start (log: {log_path}):\n{_tail(str(error))}"
            return run
        try:
            ctx.version = ctx.version or server_version(server.http_url)
            url = server.grpc_url if ctx.settings.protocol == "grpc" else server.http_url
            for level in candidate.concurrency:
                perf_log = log_dir / "perf" / f"{ENSEMBLE}_{ctx.settings.protocol}_c{level}.log"
                try:
                    measurement, stable = _measure_level(ctx, run, server, url, level)
                except PerfRunError as error:
                    run.error = (
                        f"perf_analyzer failed at concurrency {level} (log: {perf_log}; server log: "
                        f"{log_path}):\n{_tail(str(error))}"
                    )
                    break
                except subprocess.TimeoutExpired:
                    run.error = (
                        f"perf_analyzer ran past {ctx.settings.run.timeout_s:.0f} s at concurrency {level} "
                        f"(raise --perf-timeout-s; server log: {log_path})"
                    )
                    break
                point = to_point(candidate.index, measurement, stable=stable)
                run.points.append(point)
                ctx.echo(
                    f"    c={level}: {point.throughput_infer_s:.3f} infer/s  p50 {point.p50_ms:.1f} ms  "
                    f"p95 {point.p95_ms:.1f} ms  p99 {point.p99_ms:.1f} ms  "
                    f"sharp batches {batches_text(point.sharp_batches)}" + ("" if stable else "  (unstable)")
                )
        finally:
            # a scratch server with its measurement done: nothing to drain, so skip the graceful
            # unload (~6 s per candidate)
            server.kill()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return run


def sweep(
    repository: Path,
    candidates: Sequence[Candidate],
    settings: SweepSettings,
    *,
    tool: PerfAnalyzer,
    input_data: Path,
    log_dir: Path,
    measure: MeasureFn | None = None,
    echo: Echo = print,
    clock: Callable[[], float] = time.monotonic,
) -> SweepResult:
    """Measure candidates in order within ``max_candidates`` and ``time_budget_s``.

    The budget is checked before each candidate against the mean time of those measured so far, so
    a candidate is skipped rather than cut off halfway. Only scratch directories are written.
    """
    ctx = _Context(repository, settings, tool, input_data, log_dir, measure or perf_run.measure, echo)
    runs: list[CandidateRun] = []
    skipped: list[tuple[Candidate, str]] = []
    start = clock()
    for position, candidate in enumerate(candidates):
        limit = settings.max_candidates
        if limit is not None and position >= limit:
            skipped.append((candidate, f"beyond --max-candidates {limit}"))
            continue
        if settings.time_budget_s is not None and runs:
            elapsed = clock() - start
            estimate = sum(r.seconds for r in runs) / len(runs)
            if elapsed + estimate > settings.time_budget_s:
                skipped.append(
                    (
                        candidate,
                        f"time budget: {elapsed:.0f} s used, a candidate takes ~{estimate:.0f} s, "
                        f"budget {settings.time_budget_s:.0f} s",
                    )
                )
                continue
        echo(f"[{position + 1}/{len(candidates)}] candidate {candidate.index}: {label(candidate.options)}")
        began = clock()
        run = _measure_candidate(ctx, candidate)
        run.seconds = clock() - began
        runs.append(run)
        if run.error:
            echo(f"    failed: {run.error}")
        if len(runs) == 2 and all(r.error and not r.points for r in runs):
            raise SweepAbortedError(
                "the first two candidates both failed, so the cause is probably not their settings; "
                "stopping. Nothing was written.\n" + "\n".join(f"- {r.error}" for r in runs)
            )
    return SweepResult(runs, skipped, ctx.version)
