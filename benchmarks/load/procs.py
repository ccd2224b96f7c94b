"""Peak resident memory of processes, sampled from /proc while a run is in flight.

Why /proc polling rather than ``ru_maxrss``: the gateway and Triton are not our children, and
Triton's python-backend stubs are separate processes whose memory is part of Triton's cost, so a
process's RSS is summed with its descendants' at each sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(pid: int) -> tuple[str, int]:
    """(comm, ppid) of a process."""
    text = (PROC / str(pid) / "stat").read_text()
    comm = text[text.index("(") + 1 : text.rindex(")")]
    return comm, int(text.rsplit(")", 1)[1].split()[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 if it is gone)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _all_pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    parents: dict[int, list[int]] = {}
    for other in _all_pids():
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents.setdefault(_stat_fields(other)[1], []).append(other)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def find_pids(pattern: str, port: int | None = None) -> list[int]:
    """Processes whose command line contains ``pattern`` (and ``port``, when given); read-only lookup."""
    import os

    own = os.getpid()
    hits = []
    for pid in _all_pids():
        line = _cmdline(pid)
        if pid != own and pattern in line and (port is None or re.search(rf"(?<!\d){port}(?!\d)", line)):
            hits.append(pid)
    roots = set(hits)  # keep only top-most matches; their children are summed in anyway
    return [p for p in hits if not any(parent in roots for parent in _ancestors(p))]


def _ancestors(pid: int) -> list[int]:
    chain = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        while pid > 1:
            pid = _stat_fields(pid)[1]
            chain.append(pid)
    return chain


@dataclass
class PeakRss:
    """Peak summed RSS (process + descendants) per labelled group of root pids."""

    groups: dict[str, list[int]]
    interval_s: float = 0.2
    peaks: dict[str, int] = field(default_factory=dict)
    samples: int = 0

    def sample(self) -> None:
        """Take one sample of every group."""
        self.samples += 1
        for label, roots in self.groups.items():
            total = sum(rss_bytes(p) for root in roots for p in descendants(root))
            self.peaks[label] = max(self.peaks.get(label, 0), total)

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until ``stop`` is set (and once more at the end)."""
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
        self.sample()
