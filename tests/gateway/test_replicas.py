"""Many gateways, one service, on real servers: PostgreSQL (jobs, leases, outbox), SeaweedFS
(S3: inputs and results), Redis (shared limits), two tritonservers (test preset) and two gateway
processes that each spread their requests over both Tritons.

Inferences are counted by each Triton's own statistics, webhook deliveries by a receiver that
records every event id.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from benchmarks.load.client import run_load
from tests.gateway.replicas import GatewayProcess, query, sharp_inferences
from tests.gateway.support import Receiver, jpeg_bytes, png_bytes, wait_for
from tests.servers.seaweed import ACCESS_KEY_ID, SECRET_ACCESS_KEY

pytestmark = pytest.mark.timeout(900)

LEASE_S = 4.0


@dataclass
class Cluster:
    a: GatewayProcess
    b: GatewayProcess
    tritons_http: list[str]
    database_url: str
    receiver: Receiver

    def inferences(self) -> list[int]:
        return [sharp_inferences(url) for url in self.tritons_http]

    def client(self, gateway: GatewayProcess) -> httpx.Client:
        return httpx.Client(base_url=gateway.url, timeout=120, trust_env=False)


@pytest.fixture(scope="module")
def cluster(
    triton_server, triton_repository, postgres_server, seaweed, tmp_path_factory
) -> Iterator[Cluster]:
    from mlsharp.triton.server import TritonServer
    from tests.gateway.test_redis import RedisProcess

    workdir = tmp_path_factory.mktemp("replicas")
    second = TritonServer(triton_repository).start()
    redis = RedisProcess(workdir)
    receiver = Receiver()
    database_url = postgres_server.create_database()
    env = {
        "MLSHARP_BACKEND": "triton",
        "MLSHARP_TRITON_URL": f"{triton_server.grpc_url},{second.grpc_url}",
        "MLSHARP_TRITON_METRICS_URL": "",
        "MLSHARP_RESULTS_DIR": str(workdir / "results"),
        "MLSHARP_DATABASE_URL": database_url,
        "MLSHARP_OBJECT_STORE_URL": "s3://mlsharp-replicas/results",
        "MLSHARP_S3_ENDPOINT_URL": seaweed.endpoint_url,
        "MLSHARP_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "MLSHARP_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "MLSHARP_S3_CREATE_BUCKET": "true",
        "MLSHARP_LIMITS_REDIS_URL": redis.url,
        "MLSHARP_JOB_LEASE_S": str(LEASE_S),
        "MLSHARP_JOB_POLL_S": "0.2",
        "MLSHARP_JOB_MAX_FILES": "16",
        "MLSHARP_WEBHOOK_SECRET_KEY": "s" * 48,
        "MLSHARP_WEBHOOK_ALLOW_HOSTS": '["127.0.0.1"]',
        "MLSHARP_WEBHOOK_BACKOFF_S": "0.2",
        "MLSHARP_LOCAL_DOWNLOAD": "false",
        "MLSHARP_SHUTDOWN_GRACE_S": "5",
    }
    a = GatewayProcess("gateway-a", env, workdir)
    b = GatewayProcess("gateway-b", env, workdir)
    try:
        a.start()
        b.start()
        yield Cluster(a, b, [triton_server.http_url, second.http_url], database_url, receiver)
    finally:
        for gateway in (a, b):
            gateway.stop()
        receiver.close()
        redis.kill()
        second.kill()


def photos(count: int, seed: int) -> list:
    return [("files", (f"p{i}.png", png_bytes(color=(seed, i, 99)), "image/png")) for i in range(count)]


def job_state(client: httpx.Client, job_id: str) -> dict:
    return client.get(f"/v1/jobs/{job_id}").json()


def test_jobs_are_read_streamed_and_cancelled_on_the_other_gateway(cluster: Cluster) -> None:
    with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
        job = a.post("/v1/jobs", files=photos(3, seed=1)).json()
        assert b.get(f"/v1/jobs/{job['job_id']}").json()["counts"]["total"] == 3
        states = []
        with b.stream("GET", f"/v1/jobs/{job['job_id']}/events") as events:
            for line in events.iter_lines():
                if line.startswith("data:") and '"state"' in line:
                    states.append(json.loads(line[5:])["state"])
                if line.startswith("event: end"):
                    break
        assert states[-1] == "completed"
        done = job_state(b, job["job_id"])
        for file in done["files"]:  # results live in the bucket: either gateway serves them
            assert a.get(file["downloads"]["ply"]).content == b.get(file["downloads"]["ply"]).content

        before = sum(cluster.inferences())
        long = a.post("/v1/jobs", files=photos(12, seed=2)).json()
        wait_for(lambda: job_state(b, long["job_id"])["counts"]["done"] >= 1, 60)
        assert b.delete(f"/v1/jobs/{long['job_id']}").json()["state"] == "cancelled"
        time.sleep(2.0)
        final = job_state(a, long["job_id"])
        ran = sum(cluster.inferences()) - before
        assert final["state"] == "cancelled" and final["counts"]["done"] < 12
        assert ran <= final["counts"]["done"] + 1  # nothing ran after the cancel but the file in flight


def test_a_killed_gateway_s_job_is_finished_by_the_other_exactly_once(cluster: Cluster) -> None:
    files = 10
    with cluster.client(cluster.a) as a, cluster.client(cluster.b) as b:
        a.post("/v1/webhooks", json={"event_type": "task_completed", "url": cluster.receiver.url})
        before = cluster.inferences()
        job = a.post("/v1/jobs", files=photos(files, seed=3)).json()
        wait_for(lambda: job_state(b, job["job_id"])["counts"]["done"] >= 2, 60)
        (row,) = query(cluster.database_url, "SELECT lease_owner FROM jobs WHERE job_id = $1", job["job_id"])
        holder, survivor = (cluster.a, b) if row["lease_owner"] == cluster.a.name else (cluster.b, a)
        holder.kill()
        killed_at = time.monotonic()
        finished = wait_for(
            lambda: (j := job_state(survivor, job["job_id"]))["state"] == "completed" and j, 120
        )
        waited_s = time.monotonic() - killed_at
        assert waited_s >= LEASE_S - 1  # waited for the lease, not before
        ran = sum(cluster.inferences()) - sum(before)
        print(f"\nkilled {holder.name}: {files} files, {ran} network runs, finished {waited_s:.1f} s after")
        assert files <= ran <= files + 1, ran  # every file once; the one in flight at the kill twice
        assert [f["state"] for f in finished["files"]] == ["done"] * files
        wait_for(lambda: any(e["task_id"] == job["job_id"] for e in cluster.receiver.json_bodies()), 30)
        holder.start()  # the restarted gateway loses nothing: the job and its files are there
        with cluster.client(holder) as restarted:
            again = job_state(restarted, job["job_id"])
            assert again["state"] == "completed" and again["counts"]["done"] == files
            assert restarted.get(again["files"][0]["downloads"]["ply"]).status_code == 200
        survivor.delete("/v1/webhooks/task_completed")
    time.sleep(1.0)  # a duplicate delivery would arrive by now
    ids = [r["headers"]["X-Webhook-Id"] for r in cluster.receiver.delivered()]
    assert len(ids) == len(set(ids))
    assert [e["task_id"] for e in cluster.receiver.json_bodies()].count(job["job_id"]) == 1


def test_load_over_both_gateways_reaches_both_tritons_without_errors(cluster: Cluster) -> None:
    shots = [jpeg_bytes(color=(n, 255 - n, 40)) for n in range(48)]
    before = cluster.inferences()
    result = asyncio.run(
        run_load(
            [cluster.a.url, cluster.b.url], shots, requests=1000, concurrency=16, duration_s=600,
            allow_cache=True,
        )
    )  # fmt: skip
    ran = [after - start for after, start in zip(cluster.inferences(), before, strict=True)]
    print(
        f"\n1000 requests over two gateways: {result.wall_s:.1f} s, by gateway "
        f"{ {url: dict(c) for url, c in result.by_gateway.items()} }, network runs by Triton {ran}, "
        f"p50 {result.percentile_ms(50):.0f} ms p99 {result.percentile_ms(99):.0f} ms"
    )
    assert result.statuses == {"200": 1000}, result.statuses
    assert all(counts["200"] >= 400 for counts in result.by_gateway.values()), result.by_gateway
    assert all(count > 0 for count in ran), ran  # both Tritons served a share
