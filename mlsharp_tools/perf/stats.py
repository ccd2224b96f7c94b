"""Triton per-model statistics, before/after a run, turned into a per-stage breakdown.

Why deltas: ``/v2/models/stats`` is cumulative since the server started, so a window's queue and
compute times are the difference of two snapshots. ``batch_stats`` counts executions per batch
size, which is how we see the batches the dynamic batcher actually formed. perf_analyzer's warm-up
requests fall inside the window, so counts are a little larger than the measured requests.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

_PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


def snapshot(http_url: str, timeout_s: float = 10.0) -> dict[str, dict[str, Any]]:
    """All models' cumulative stats keyed by model name (``http_url`` is ``host:port``)."""
    with urllib.request.urlopen(f"http://{http_url}/v2/models/stats", timeout=timeout_s) as response:
        body = json.load(response)
    return {m["name"]: m for m in body.get("model_stats", [])}


def _ns(block: dict[str, Any], key: str) -> tuple[int, int]:
    entry = block.get(key) or {}
    return int(entry.get("count", 0)), int(entry.get("ns", 0))


@dataclass
class StageStats:
    """One model's activity within a window: per-request phase means and formed batch sizes."""

    model: str
    requests: int
    executions: int
    mean_ms: dict[str, float] = field(default_factory=dict)
    batches: dict[int, int] = field(default_factory=dict)

    @property
    def mean_batch(self) -> float:
        """Requests per execution (1.0 means the batcher never combined requests)."""
        return self.requests / self.executions if self.executions else 0.0


def delta(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> list[StageStats]:
    """Models that served requests between the snapshots, with mean ms per request per phase."""
    stages = []
    for name, now in after.items():
        was = before.get(name, {})
        now_inf, was_inf = now.get("inference_stats", {}), was.get("inference_stats", {})
        requests = _ns(now_inf, "success")[0] - _ns(was_inf, "success")[0]
        if requests <= 0:
            continue
        executions = int(now.get("execution_count", 0)) - int(was.get("execution_count", 0))
        mean_ms = {}
        for phase in _PHASES:
            (c1, n1), (c0, n0) = _ns(now_inf, phase), _ns(was_inf, phase)
            mean_ms[phase] = (n1 - n0) / max(c1 - c0, 1) / 1e6
        was_batches = {int(b["batch_size"]): _ns(b, "compute_infer")[0] for b in was.get("batch_stats", [])}
        batches = {}
        for b in now.get("batch_stats", []):
            size = int(b["batch_size"])
            count = _ns(b, "compute_infer")[0] - was_batches.get(size, 0)
            if count > 0:
                batches[size] = count
        stages.append(StageStats(name, requests, executions, mean_ms, dict(sorted(batches.items()))))
    return sorted(stages, key=lambda s: s.model)
