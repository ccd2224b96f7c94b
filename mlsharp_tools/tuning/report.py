"""The table ``mlsharp tune`` prints: one row per measured point, the winner marked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlsharp.triton.models import RepositoryOptions

HEADERS = (
    "",
    "cand",
    "max_batch",
    "preferred",
    "delay_us",
    "inst pre/sharp/post",
    "threads",
    "prec",
    "conc",
    "infer/s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "sharp batches",
)


def batches_text(batches: Mapping[int, int]) -> str:
    """``{1: 3, 2: 4}`` -> ``1x3 2x4`` (batch size x executions); ``-`` when none."""
    return " ".join(f"{size}x{count}" for size, count in sorted(batches.items())) or "-"


def preferred_text(sizes: Sequence[int]) -> str:
    """``(2, 4)`` -> ``2,4``; ``none`` for no preferred sizes."""
    return ",".join(str(s) for s in sizes) or "none"


def label(opts: RepositoryOptions) -> str:
    """A one-line description of a candidate's tuned settings."""
    preferred = preferred_text(opts.resolved_preferred_batch_sizes())
    return (
        f"max_batch {opts.max_batch_size}, preferred {preferred}, "
        f"delay {opts.max_queue_delay_us} us, instances {opts.preprocess_instances}/{opts.sharp_instances}/"
        f"{opts.postprocess_instances}, threads {opts.intra_op_threads}, {opts.precision}"
    )


#: columns holding one number each (right-aligned); the others are text
NUMERIC_COLUMNS = frozenset(
    ("cand", "max_batch", "delay_us", "threads", "conc", "infer/s", "p50_ms", "p95_ms", "p99_ms")
)


def render_table(rows: Sequence[Sequence[str]], headers: Sequence[str] = HEADERS) -> str:
    """Fixed-width columns: numbers right-aligned, text left-aligned."""
    widths = [max(len(str(r[i])) for r in (headers, *rows)) for i in range(len(headers))]
    right = [header in NUMERIC_COLUMNS for header in headers]

    def line(cells: Sequence[str]) -> str:
        out = []
        for cell, width, align_right in zip(cells, widths, right, strict=True):
            out.append(cell.rjust(width) if align_right else cell.ljust(width))
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def table(
    candidates: Sequence[Mapping[str, Any]],
    points: Sequence[Mapping[str, Any]],
    winner: Mapping[str, Any] | None,
    p95_bound_ms: float | None = None,
) -> str:
    """Rows from tuning.json's candidate and point records (so a cached result prints the same).

    Marks: ``*`` the winner, ``!`` over the p95 bound, ``~`` unstable; failed candidates get a line.
    """
    by_index = {c["index"]: c for c in candidates}
    rows: list[list[str]] = []
    for point in points:
        fields = by_index[point["candidate"]]["fields"]
        is_winner = bool(
            winner
            and point["candidate"] == winner["candidate"]
            and point["concurrency"] == winner["concurrency"]
        )
        over = p95_bound_ms is not None and point["p95_ms"] > p95_bound_ms
        batches = {int(k): int(v) for k, v in point.get("sharp_batches", {}).items()}
        marks = (
            ("*" if is_winner else "") + ("!" if over else "") + ("" if point.get("stable", True) else "~")
        )
        rows.append(
            [
                marks,
                str(point["candidate"]),
                str(fields["max_batch_size"]),
                preferred_text(fields["preferred_batch_sizes"]),
                str(fields["max_queue_delay_us"]),
                f"{fields['preprocess_instances']}/{fields['sharp_instances']}/{fields['postprocess_instances']}",
                str(fields["intra_op_threads"]),
                fields["precision"],
                str(point["concurrency"]),
                f"{point['throughput_infer_s']:.3f}",
                f"{point['p50_ms']:.1f}",
                f"{point['p95_ms']:.1f}",
                f"{point['p99_ms']:.1f}",
                batches_text(batches),
            ]
        )
    text = render_table(rows)
    failed = [c for c in candidates if c.get("error")]
    for cand in failed:
        first = cand["error"].splitlines()[0]
        text += f"\n  candidate {cand['index']} failed: {first}"
    legend = "* winner" + ("   ! p95 over the bound" if p95_bound_ms is not None else "")
    if any(not point.get("stable", True) for point in points):
        legend += "   ~ no stable window (re-measured without perf_analyzer's stability check)"
    return text + "\n" + legend
