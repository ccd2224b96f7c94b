"""``python -m benchmarks.load``: bounded asyncio load on the gateway's ``POST /v1/predict``.

Loopback only. Reports p50/p95/p99 latency, throughput, errors by status, 429s apart from errors
(each retried after its ``Retry-After``) and the peak RSS of the
gateway and Triton (each summed with its child processes) sampled from /proc during the run.
``--url`` given several times spreads the requests over several gateways (round robin) and
reports each one's share; ``--triton-http`` (several times) reports each Triton's share of the
network runs from its own statistics.
Requests already in flight when ``--duration-s`` runs out are allowed to finish and are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from benchmarks.load.client import LoadResult, NotLoopbackError, require_loopback, run_load
from benchmarks.load.procs import PeakRss, find_pids

MIB = 1024 * 1024


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    p.add_argument(
        "--url", action="append", default=[], help="gateway base URL, loopback only (repeat for several)"
    )
    p.add_argument(
        "--triton-http",
        action="append",
        default=[],
        help="a Triton's HTTP URL, to count its share of the network runs (repeat for several)",
    )
    p.add_argument("--requests", type=int, default=20, help="stop after this many requests")
    p.add_argument("--concurrency", type=int, default=2, help="requests in flight")
    p.add_argument("--duration-s", type=float, default=120.0, help="stop issuing requests after this")
    p.add_argument("--photos", nargs="*", default=[], help="image files (default: generated photos)")
    p.add_argument("--format", default="ply")
    p.add_argument("--warmup", type=int, default=1, help="uncounted requests sent first, one at a time")
    p.add_argument("--allow-cache", action="store_true", help="repeat photos verbatim (measures the cache)")
    p.add_argument("--max-retries", type=int, default=5, help="retries of a 429 after its Retry-After")
    p.add_argument("--api-key", help="X-API-Key, when the gateway has auth enabled")
    p.add_argument("--gateway-pid", type=int, action="append", default=[], help="default: found by name")
    p.add_argument("--triton-pid", type=int, action="append", default=[], help="default: found by name")
    p.add_argument("--triton-url", help="host:port Triton listens on, to find its pid among several")
    p.add_argument("--json", type=Path, help="also write the summary as JSON here")
    return p


def _pids(given: list[int], pattern: str, port: int | None) -> list[int]:
    """Given pids, else processes matching ``pattern`` (and ``port``); warn when it is ambiguous."""
    if given:
        return given
    found = find_pids(pattern, port)
    if len(found) > 1:
        print(f"warning: several {pattern!r} processes {found}; pass the pid to be exact", file=sys.stderr)
    return found


def summary(result: LoadResult, peaks: PeakRss, args: argparse.Namespace) -> dict[str, object]:
    """Everything the run measured, JSON-ready."""
    return {
        "url": args.url,
        "by_gateway": {url: dict(counts) for url, counts in result.by_gateway.items()},
        "requests_sent": len(result.latencies_s),
        "concurrency": args.concurrency,
        "warmup": args.warmup,
        "unique_images": not args.allow_cache,
        "stopped_by": result.stopped_by,
        "wall_s": round(result.wall_s, 3),
        "ok": result.ok,
        "errors": result.errors,
        "rejected_429": result.rejected,
        "throttled_429": result.throttled,
        "retry_wait_s": round(result.retry_wait_s, 3),
        "statuses": dict(result.statuses),
        "throughput_rps": round(result.throughput, 4),
        "p50_ms": round(result.percentile_ms(50), 1),
        "p95_ms": round(result.percentile_ms(95), 1),
        "p99_ms": round(result.percentile_ms(99), 1),
        "peak_rss_mib": {k: round(v / MIB, 1) for k, v in peaks.peaks.items()},
        "pids": peaks.groups,
        "rss_samples": peaks.samples,
    }


async def sharp_inferences(triton_http: str, model: str = "sharp") -> int:
    """How many requests this Triton's network model has run (its own statistics)."""
    base_url = triton_http if "://" in triton_http else f"http://{triton_http}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10, trust_env=False) as client:
        response = await client.get(f"/v2/models/{model}/stats")
        response.raise_for_status()
        return sum(int(stats.get("inference_count", 0)) for stats in response.json()["model_stats"])


async def _main(args: argparse.Namespace) -> dict[str, object]:
    from mlsharp_tools.perf.inputs import generated_photos, load_photos

    photos = load_photos(args.photos) if args.photos else generated_photos()
    gateway_port = urlsplit(args.url[0]).port if len(args.url) == 1 else None
    groups = {
        "gateway": _pids(args.gateway_pid, "gateway", gateway_port),
        "triton": _pids(
            args.triton_pid,
            "tritonserver",
            int(args.triton_url.rsplit(":", 1)[1]) if args.triton_url else None,
        ),
    }
    peaks = PeakRss(groups)
    before = [await sharp_inferences(url) for url in args.triton_http]
    stop = asyncio.Event()
    sampler = asyncio.create_task(peaks.run(stop))
    try:
        result = await run_load(
            args.url,
            photos,
            requests=args.requests,
            concurrency=args.concurrency,
            duration_s=args.duration_s,
            fmt=args.format,
            api_key=args.api_key,
            warmup=args.warmup,
            allow_cache=args.allow_cache,
            max_retries=args.max_retries,
        )
    finally:
        stop.set()
        await sampler
    report = summary(result, peaks, args)
    after = [await sharp_inferences(url) for url in args.triton_http]
    report["by_triton"] = {url: b - a for url, a, b in zip(args.triton_http, before, after, strict=True)}
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.url = args.url or ["http://127.0.0.1:8080"]
    try:
        for url in args.url:
            require_loopback(url)
    except NotLoopbackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = asyncio.run(_main(args))
    print(
        f"{report['requests_sent']} requests, concurrency {args.concurrency}, {report['wall_s']} s "
        f"(stopped by {report['stopped_by']}): ok {report['ok']}, "
        f"errors {report['errors']}, 429 answers {report['throttled_429']} "
        f"(still refused after retries: {report['rejected_429']}) {report['statuses']}"
    )
    print(
        f"throughput {report['throughput_rps']} req/s  p50 {report['p50_ms']} ms  "
        f"p95 {report['p95_ms']} ms  p99 {report['p99_ms']} ms"
    )
    if len(args.url) > 1:
        print(f"per gateway: {report['by_gateway']}")
    if args.triton_http:
        print(f"network runs per Triton: {report['by_triton']}")
    for label, mib in report["peak_rss_mib"].items():  # type: ignore[union-attr]
        pids = report["pids"][label] or "not found"  # type: ignore[index]
        print(f"peak RSS {label}: {mib} MiB (pids {pids})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
