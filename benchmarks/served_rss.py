"""``python -m benchmarks.served_rss``: does the served repository's memory stay bounded?

    .venv/bin/python -m benchmarks.served_rss --repository artifacts/full-ov/model_repository \\
        --requests 10 --json rss.json

Starts a loopback tritonserver on the repository, then sends ``--requests`` identical one-photo
requests to the ``mlsharp`` ensemble, one after another. After each request it reads the resident
size of the server with its python-backend stubs (``sharp`` is one of them) from /proc, and it
samples the peak every 0.2 s while requests run. The issue-18 criterion: the RSS after request 10
within 5 % of the RSS after request 1 (a leak or a growing arena shows as steady growth).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.load.procs import _cmdline, descendants, rss_bytes
from benchmarks.triton_request import run_request

GIB = 1 << 30


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process (0 if unreadable): shared pages divided among their users.

    Why besides RSS: the python backend passes tensors through shared memory that both tritonserver
    and the stub map, so a sum of RSS counts those pages twice; a sum of PSS counts them once.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in (Path("/proc") / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def tree_pss_bytes(pid: int) -> int:
    """Summed PSS of ``pid`` and its descendants."""
    return sum(pss_bytes(p) for p in descendants(pid))


def tree_rss_bytes(pid: int) -> dict[int, int]:
    """Resident bytes of ``pid`` and each of its descendants."""
    return {p: rss_bytes(p) for p in descendants(pid)}


def label(pid: int) -> str:
    """``tritonserver`` or the model a python-backend stub serves (``sharp#1`` for a second one)."""
    line = _cmdline(pid)
    if "triton_python_backend_stub" not in line:
        return "tritonserver" if "tritonserver" in line else f"pid {pid}"
    model_py = next((part for part in line.split() if part.endswith("/1/model.py")), "")
    return Path(model_py).parent.parent.name or f"stub {pid}"


def by_model(per_process: dict[int, int]) -> dict[str, int]:
    """Resident bytes per labelled process, in pid order (instances of one model get ``#n``)."""
    out: dict[str, int] = {}
    for pid in sorted(per_process):
        name = label(pid)
        key, n = name, 1
        while key in out:
            key, n = f"{name}#{n}", n + 1
        out[key] = per_process[pid]
    return out


class PeakSampler:
    """The largest summed RSS of a process tree, sampled in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.pid, self.interval_s, self.peak_bytes = pid, interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, sum(tree_rss_bytes(self.pid).values()))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def growth(rss_after: Sequence[int]) -> float:
    """Relative change from the first request's RSS to the last one's."""
    return (rss_after[-1] - rss_after[0]) / rss_after[0]


def main(argv: Sequence[str] | None = None) -> int:
    from mlsharp.triton.server import TritonServer
    from mlsharp_tools.perf.inputs import generated_photos

    p = argparse.ArgumentParser(prog="python -m benchmarks.served_rss", description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, required=True)
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--format", default="ply")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    photo = generated_photos(((1024, 768, 2),))[0]
    with TritonServer(args.repository.resolve(), startup_timeout_s=900) as server:
        assert server.process is not None
        pid = server.process.pid
        idle = sum(tree_rss_bytes(pid).values())
        print(f"server + stubs after load: {idle / GIB:.2f} GiB", flush=True)
        seconds, after, largest, models, pss = [], [], [], [], []
        with PeakSampler(pid) as sampler:
            for index in range(args.requests):
                request_s, _ = run_request(server.grpc_url, photo, args.format)
                per_process = tree_rss_bytes(pid)
                seconds.append(request_s)
                after.append(sum(per_process.values()))
                largest.append(max(per_process.values()))
                pss.append(tree_pss_bytes(pid))
                models.append(by_model(per_process))
                detail = ", ".join(f"{k} {v / GIB:.3f}" for k, v in models[-1].items())
                print(
                    f"request {index + 1}: {request_s:.2f} s, RSS server+stubs {after[-1] / GIB:.3f} GiB, "
                    f"PSS {pss[-1] / GIB:.3f} GiB "
                    f"({detail})",
                    flush=True,
                )
        peak = max(sampler.peak_bytes, *after)  # the 0.2 s samples can miss the last value
        server.kill()  # measured: skip the graceful unload (~6 s), nothing is in flight
    change = growth(after)
    sharp = [m.get("sharp", 0) for m in models]
    sharp_change = growth(sharp) if sharp[0] else 0.0
    print(
        f"RSS after request 1: {after[0] / GIB:.3f} GiB; "
        f"after request {len(after)}: {after[-1] / GIB:.3f} GiB"
    )
    print(f"change {change * 100:+.2f} % (bound: within 5 %); sampled peak {peak / GIB:.3f} GiB")
    print(
        f"PSS (shared memory counted once): {pss[0] / GIB:.3f} GiB after request 1, {pss[-1] / GIB:.3f} "
        f"GiB after request {len(pss)}, change {growth(pss) * 100:+.2f} %"
    )
    print(
        f"sharp stub alone: {sharp[0] / GIB:.3f} GiB after request 1, {sharp[-1] / GIB:.3f} GiB after "
        f"request {len(sharp)}, change {sharp_change * 100:+.2f} %"
    )
    print(f"load average (1 min) {os.getloadavg()[0]:.2f}")
    if args.json:
        result = {
            "repository": str(args.repository),
            "requests": args.requests,
            "request_s": seconds,
            "rss_after_load_bytes": idle,
            "rss_after_request_bytes": after,
            "largest_process_rss_after_request_bytes": largest,
            "rss_by_process_after_request_bytes": models,
            "pss_after_request_bytes": pss,
            "sharp_change_first_to_last": sharp_change,
            "peak_rss_bytes": peak,
            "change_first_to_last": change,
            "within_5_percent": abs(change) <= 0.05,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
