"""CSV and markdown output for perf_analyzer measurements."""

from __future__ import annotations

import csv
import platform
from collections.abc import Sequence
from pathlib import Path

from mlsharp_tools.perf.run import Measurement

CSV_FIELDS = (
    "model",
    "protocol",
    "concurrency",
    "throughput_infer_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "avg_ms",
)
STAGE_FIELDS = (
    "model",
    "protocol",
    "concurrency",
    "stage",
    "requests",
    "executions",
    "mean_batch",
    "queue_ms",
    "compute_input_ms",
    "compute_infer_ms",
    "compute_output_ms",
    "batch_sizes",
)


def _batches(sizes: dict[int, int]) -> str:
    return " ".join(f"{size}x{count}" for size, count in sizes.items()) or "-"


def write_csv(results: Sequence[Measurement], out: Path) -> tuple[Path, Path]:
    """``perf.csv`` (client view, one row per level) and ``stages.csv`` (server view per model)."""
    out.mkdir(parents=True, exist_ok=True)
    main, stages = out / "perf.csv", out / "stages.csv"
    with main.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_FIELDS)
        for m in results:
            writer.writerow(
                [
                    m.model,
                    m.protocol,
                    m.concurrency,
                    f"{m.throughput:.4f}",
                    f"{m.p50_ms:.2f}",
                    f"{m.p95_ms:.2f}",
                    f"{m.p99_ms:.2f}",
                    f"{m.avg_ms:.2f}",
                ]
            )
    with stages.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(STAGE_FIELDS)
        for m in results:
            for s in m.stages:
                ms = s.mean_ms
                writer.writerow(
                    [
                        m.model,
                        m.protocol,
                        m.concurrency,
                        s.model,
                        s.requests,
                        s.executions,
                        f"{s.mean_batch:.2f}",
                        f"{ms['queue']:.2f}",
                        f"{ms['compute_input']:.2f}",
                        f"{ms['compute_infer']:.2f}",
                        f"{ms['compute_output']:.2f}",
                        _batches(s.batches),
                    ]
                )
    return main, stages


def markdown(results: Sequence[Measurement], *, command: str, notes: Sequence[str] = ()) -> str:
    """A report: the client table, then per level the server-side stage breakdown."""
    lines = [
        "# perf_analyzer report",
        "",
        f"Command: `{command}`  ",
        f"Host: {platform.node()} ({platform.machine()}), perf_analyzer from tritonclient 2.50.0.",
        *[f"{note}  " for note in notes],
        "",
        "| model | protocol | concurrency | throughput (infer/s) | p50 ms | p95 ms | p99 ms | avg ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in results:
        lines.append(
            f"| {m.model} | {m.protocol} | {m.concurrency} | {m.throughput:.3f} | {m.p50_ms:.1f} | "
            f"{m.p95_ms:.1f} | {m.p99_ms:.1f} | {m.avg_ms:.1f} |"
        )
    lines += [
        "",
        "## Per-stage breakdown (Triton statistics, mean ms per request over the window)",
        "",
        "Queue is time waiting for an instance or for the batcher; compute is input copy + infer + output.",
        "Batch sizes read `size x executions` from `batch_stats` (what the dynamic batcher formed).",
        "",
        "| model | protocol | conc. | stage | requests | executions | mean batch | queue | compute in "
        "| compute infer | compute out | batch sizes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in results:
        for s in m.stages:
            ms = s.mean_ms
            lines.append(
                f"| {m.model} | {m.protocol} | {m.concurrency} | {s.model} | {s.requests} | {s.executions} "
                f"| {s.mean_batch:.2f} | {ms['queue']:.1f} | {ms['compute_input']:.1f} "
                f"| {ms['compute_infer']:.1f} | {ms['compute_output']:.1f} | {_batches(s.batches)} |"
            )
    return "\n".join(lines) + "\n"
