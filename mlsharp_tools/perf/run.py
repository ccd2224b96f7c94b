"""One perf_analyzer invocation per (model, protocol, concurrency), with Triton stats around it.

Why one process per concurrency level: Triton's statistics are per server, not per level, so the
only way to attribute queue/compute time and formed batch sizes to a concurrency is to snapshot the
stats around a run that covers just that level.
"""

from __future__ import annotations

import csv
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mlsharp_tools.perf import stats as triton_stats
from mlsharp_tools.perf.tool import PerfAnalyzer

US_TO_MS = 1e-3


@dataclass
class Measurement:
    """perf_analyzer's client-side numbers for one level plus the server-side breakdown."""

    model: str
    protocol: str
    concurrency: int
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    stages: list[triton_stats.StageStats] = field(default_factory=list)


@dataclass
class RunSettings:
    """How long perf_analyzer measures; short defaults keep a 2-core box usable."""

    measurement_interval_ms: int = 5000
    max_trials: int = 5
    stability_percentage: int = 20
    #: ``count_windows`` with a request count suits seconds-long CPU requests; 0 means time windows
    request_count: int = 0
    timeout_s: float = 900.0


class PerfRunError(RuntimeError):
    """perf_analyzer exited non-zero; carries its output."""


def parse_csv(path: Path) -> dict[str, str]:
    """The first data row of perf_analyzer's ``-f`` CSV (later sections are per-model detail)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise PerfRunError(f"empty perf_analyzer CSV {path}")
    return rows[0]


#: the CSV has no average column; its latency components add up to perf_analyzer's "Avg latency"
_AVG_PARTS = (
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
)


def avg_latency_us(row: dict[str, str]) -> float:
    """Mean client latency in microseconds, summed from the CSV's components."""
    return sum(float(row[key]) for key in _AVG_PARTS)


def measure(
    tool: PerfAnalyzer,
    *,
    model: str,
    protocol: str,
    url: str,
    stats_url: str,
    input_data: Path,
    concurrency: int,
    work_dir: Path,
    settings: RunSettings,
) -> Measurement:
    """Run one concurrency level; ``url`` matches ``protocol``, ``stats_url`` is Triton's HTTP."""
    work_dir.mkdir(parents=True, exist_ok=True)
    csv_path = work_dir / f"{model}_{protocol}_c{concurrency}.csv"
    cmd = [
        str(tool.binary),
        "-m",
        model,
        "-u",
        url,
        "-i",
        protocol,
        "--input-data",
        str(input_data),
        "--concurrency-range",
        f"{concurrency}:{concurrency}",
        *(
            [
                "--measurement-mode",
                "count_windows",
                "--measurement-request-count",
                str(settings.request_count),
            ]
            if settings.request_count
            else ["--measurement-interval", str(settings.measurement_interval_ms)]
        ),
        "--max-trials",
        str(settings.max_trials),
        "--stability-percentage",
        str(settings.stability_percentage),
        "--percentile",
        "95",
        "-f",
        str(csv_path),
    ]
    before = triton_stats.snapshot(stats_url)
    proc = subprocess.run(
        cmd, env=tool.env(), capture_output=True, text=True, timeout=settings.timeout_s, check=False
    )
    after = triton_stats.snapshot(stats_url)
    (work_dir / f"{model}_{protocol}_c{concurrency}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not csv_path.exists():
        raise PerfRunError(
            f"perf_analyzer failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    row = parse_csv(csv_path)
    return Measurement(
        model=model,
        protocol=protocol,
        concurrency=concurrency,
        throughput=float(row["Inferences/Second"]),
        p50_ms=float(row["p50 latency"]) * US_TO_MS,
        p95_ms=float(row["p95 latency"]) * US_TO_MS,
        p99_ms=float(row["p99 latency"]) * US_TO_MS,
        avg_ms=avg_latency_us(row) * US_TO_MS,
        stages=triton_stats.delta(before, after),
    )
