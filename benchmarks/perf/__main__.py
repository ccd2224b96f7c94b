"""``python -m benchmarks.perf``: perf_analyzer over models x protocols x concurrency, CSV + markdown.

Either ``--repository DIR`` (a local tritonserver is started on loopback and stopped afterwards)
or ``--url HOST:PORT`` (+ ``--grpc-url``) for a server that is already running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from benchmarks.perf import report
from mlsharp_tools.perf import inputs
from mlsharp_tools.perf.run import Measurement, RunSettings, measure
from mlsharp_tools.perf.tool import DEFAULT_TOOLS, PerfAnalyzer


def concurrency_range(text: str) -> list[int]:
    """``"1:4"`` -> [1, 2, 3, 4]; ``"1:8:2"`` -> [1, 3, 5, 7]; ``"2"`` -> [2]."""
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 1:
        return parts
    start, end, step = parts[0], parts[1], parts[2] if len(parts) > 2 else 1
    if start < 1 or end < start or step < 1:
        raise argparse.ArgumentTypeError(f"bad concurrency range {text!r}")
    return list(range(start, end + 1, step))


def working_size(http_url: str) -> int:
    """The ``sharp`` input's spatial size, read from the served model config."""
    with urllib.request.urlopen(f"http://{http_url}/v2/models/sharp/config", timeout=10) as response:
        config = json.load(response)
    dims = next(i["dims"] for i in config["input"] if i["name"] == "image")
    return int(dims[-1])


@contextlib.contextmanager
def server_urls(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """Yield (http, grpc) ``host:port``; start a loopback server when given a repository."""
    if args.url:
        yield args.url, args.grpc_url or args.url.rsplit(":", 1)[0] + ":8001"
        return
    from mlsharp.triton.server import TritonServer

    with TritonServer(args.repository, log_path=args.out / "tritonserver.log") as server:
        yield server.http_url, server.grpc_url


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.perf", description=__doc__)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--repository", type=Path, help="model repository; a local server is started")
    where.add_argument("--url", help="HTTP host:port of a running server")
    p.add_argument("--grpc-url", help="gRPC host:port (default: the --url host, port 8001)")
    p.add_argument("--models", default="mlsharp,sharp", help="comma list of mlsharp and/or sharp")
    p.add_argument("--protocols", default="http,grpc", help="comma list of http and/or grpc")
    p.add_argument("--concurrency", type=concurrency_range, default=[1, 2, 3, 4], help="start:end[:step]")
    p.add_argument("--photos", nargs="*", default=[], help="JPEG/PNG files (default: generated photos)")
    p.add_argument("--format", default="ply", help="scene format requested from the ensemble")
    p.add_argument("--measurement-interval-ms", type=int, default=5000)
    p.add_argument("--max-trials", type=int, default=5)
    p.add_argument("--stability-percentage", type=int, default=20, help="999 accepts any window")
    p.add_argument(
        "--request-count",
        type=int,
        default=0,
        help="count windows of N requests instead of time windows (for slow CPU requests)",
    )
    p.add_argument("--tools-dir", type=Path, default=DEFAULT_TOOLS, help="private venv for perf_analyzer")
    p.add_argument("--out", type=Path, required=True, help="directory for CSV, report.md and raw logs")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = set(models) - {"mlsharp", "sharp"} | set(protocols) - {"http", "grpc"}
    if unknown:
        print(f"error: unknown model/protocol {sorted(unknown)}", file=sys.stderr)
        return 2
    tool = PerfAnalyzer(args.tools_dir).ensure()
    photos = inputs.load_photos(args.photos) if args.photos else inputs.generated_photos()
    settings = RunSettings(
        args.measurement_interval_ms, args.max_trials, args.stability_percentage, args.request_count
    )
    results: list[Measurement] = []
    with server_urls(args) as (http_url, grpc_url):
        data_files = {}
        if "mlsharp" in models:
            data_files["mlsharp"] = inputs.write_json(
                inputs.ensemble_data(photos, args.format), args.out / "input_mlsharp.json"
            )
        if "sharp" in models:
            size = working_size(http_url)
            data_files["sharp"] = inputs.write_json(
                inputs.sharp_data(photos, size), args.out / "input_sharp.json"
            )
        for model in models:
            for protocol in protocols:
                for level in args.concurrency:
                    m = measure(
                        tool,
                        model=model,
                        protocol=protocol,
                        url=http_url if protocol == "http" else grpc_url,
                        stats_url=http_url,
                        input_data=data_files[model],
                        concurrency=level,
                        work_dir=args.out / "raw",
                        settings=settings,
                    )
                    print(
                        f"{model:8s} {protocol:4s} c={level}: {m.throughput:.3f} infer/s  "
                        f"p50 {m.p50_ms:.1f} ms  p95 {m.p95_ms:.1f} ms  p99 {m.p99_ms:.1f} ms",
                        flush=True,
                    )
                    results.append(m)
    csv_main, csv_stages = report.write_csv(results, args.out)
    command = "python -m benchmarks.perf " + shlex.join(argv if argv is not None else sys.argv[1:])
    window = (
        f"count windows of {args.request_count} requests"
        if args.request_count
        else f"time windows of {args.measurement_interval_ms} ms"
    )
    notes = [
        f"Measurement: {window}, up to {args.max_trials} trials, stability {args.stability_percentage} %"
        + (" (not enforced)" if args.stability_percentage >= 100 else "")
        + ".",
        f"Photos: {len(photos)} ({'given' if args.photos else 'generated photo-like JPEGs'}), "
        f"format {args.format}.",
    ]
    (args.out / "report.md").write_text(report.markdown(results, command=command, notes=notes))
    print(f"wrote {csv_main}, {csv_stages}, {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
