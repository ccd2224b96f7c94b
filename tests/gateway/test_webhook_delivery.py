"""Issue 13 items 2, 3 and 7 (webhooks): pinned addresses, bounded attempts, owners isolated,
retries kept on re-registration, no DNS answers in errors, no secret at rest, 6to4/site-local."""

from __future__ import annotations

import asyncio
import ipaddress
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.service.auth import hash_key
from gateway.service.ssrf import is_public
from gateway.service.webhooks import SIGNATURE_HEADER, verify
from tests.gateway.support import FakeBackend, Receiver, png_bytes, wait_for
from tests.gateway.webhook_fixtures import (
    FakeResolver,
    LoopbackOnlyNetwork,
    endless_body,
    scripted,
    trickle,
)

PUBLIC = "93.184.216.34"  # never contacted: the loopback-only network refuses it


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> FakeResolver:
    return FakeResolver(monkeypatch)


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> LoopbackOnlyNetwork:
    return LoopbackOnlyNetwork(monkeypatch)


def outbox(client: TestClient) -> dict[str, int]:
    return client.get("/v1/stats").json()["webhooks"]


def test_rebinding_never_reaches_loopback(make_settings, resolver, network, receiver: Receiver) -> None:
    """Registration and the delivery check see a public answer, the next answer is 127.0.0.1:
    the POST must go to the checked address (refused by the test network), never to 127.0.0.1."""
    resolver.answer("rebind.example", [PUBLIC], [PUBLIC], ["127.0.0.1"])
    port = httpx.URL(receiver.url).port
    settings = make_settings(webhook_allow_hosts=(), webhook_max_attempts=2)
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as client:
        created = client.post(
            "/v1/webhooks", json={"event_type": "task_completed", "url": f"http://rebind.example:{port}/hook"}
        )
        assert created.status_code == 200, created.text
        client.post("/v1/predict", files={"file": ("a.png", png_bytes())})
        wait_for(lambda: outbox(client).get("failed"))
    assert receiver.requests == []
    assert network.refused == [(PUBLIC, port)]  # the first attempt went to the checked address
    assert network.connected == []


def test_pinned_request_keeps_host_and_sni() -> None:
    from gateway.service.ssrf import Target
    from gateway.service.webhook_http import pinned_request

    target = Target(
        "https://hooks.example:8443/in?x=1", "hooks.example", 8443, (ipaddress.ip_address(PUBLIC),)
    )
    request = pinned_request(httpx.AsyncClient(), target, PUBLIC, b"{}", {"X-Test": "1"})
    assert str(request.url) == f"https://{PUBLIC}:8443/in?x=1"
    assert request.headers["host"] == "hooks.example:8443"
    assert request.extensions["sni_hostname"] == "hooks.example"
    v6 = Target("http://hooks.example/x", "hooks.example", 80, (ipaddress.ip_address("::1"),))
    assert str(pinned_request(httpx.AsyncClient(), v6, "::1", b"", {}).url) == "http://[::1]/x"


def test_delivery_presents_the_name_to_the_pinned_address(make_settings, resolver, receiver) -> None:
    resolver.answer("hooks.example", ["127.0.0.1"])
    port = httpx.URL(receiver.url).port
    with TestClient(
        create_app(make_settings(), backend=FakeBackend()), raise_server_exceptions=False
    ) as client:
        client.post(
            "/v1/webhooks", json={"event_type": "task_completed", "url": f"http://hooks.example:{port}/hook"}
        )
        client.post("/v1/predict", files={"file": ("a.png", png_bytes())})
        (delivery,) = wait_for(receiver.delivered)
    assert delivery["headers"]["Host"] == f"hooks.example:{port}"


def test_response_body_is_capped(make_settings) -> None:
    receiver = scripted(lambda ref: endless_body(ref, declared=96 << 20))
    try:
        with TestClient(
            create_app(make_settings(), backend=FakeBackend()), raise_server_exceptions=False
        ) as c:
            c.post("/v1/webhooks", json={"event_type": "task_completed", "url": receiver.url})
            c.post("/v1/predict", files={"file": ("a.png", png_bytes())})
            wait_for(lambda: outbox(c).get("delivered"), timeout_s=20)
            time.sleep(0.3)
        # the gateway read at most 64 KiB and hung up; only socket buffers were filled
        assert receiver.sent < 16 << 20, receiver.sent
    finally:
        receiver.close()


def test_one_deadline_per_attempt(make_settings) -> None:
    """One byte every 0.2 s never trips a per-read timeout; the attempt deadline (1 s) does."""
    receiver = scripted(lambda ref: trickle(ref, every_s=0.2))
    try:
        settings = make_settings(webhook_timeout_s=1.0, webhook_max_attempts=2)
        with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as c:
            c.post("/v1/webhooks", json={"event_type": "task_completed", "url": receiver.url})
            c.post("/v1/predict", files={"file": ("a.png", png_bytes())})
            wait_for(lambda: receiver.attempts >= 2, timeout_s=6)
            wait_for(lambda: outbox(c).get("failed"), timeout_s=6)
        assert 0.9 <= receiver.started[1] - receiver.started[0] < 3.0
    finally:
        receiver.close()


def test_a_slow_receiver_does_not_delay_another_owners_delivery(make_settings, receiver: Receiver) -> None:
    slow = scripted(lambda ref: trickle(ref, every_s=0.2))
    keys = [
        {"name": "alice", "sha256": hash_key("alice-key"), "scopes": ["admin"]},
        {"name": "bob", "sha256": hash_key("bob-key"), "scopes": ["admin"]},
    ]
    settings = make_settings(auth_enabled=True, api_keys=keys, webhook_timeout_s=8.0)
    alice, bob = {"X-API-Key": "alice-key"}, {"X-API-Key": "bob-key"}
    try:
        with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as c:
            c.post("/v1/webhooks", json={"event_type": "task_completed", "url": slow.url}, headers=alice)
            c.post("/v1/webhooks", json={"event_type": "task_completed", "url": receiver.url}, headers=bob)
            c.post("/v1/predict", files={"file": ("a.png", png_bytes())}, headers=alice)
            wait_for(lambda: slow.attempts == 1)  # alice's attempt is now held by her receiver
            sent = time.time()
            c.post("/v1/predict", files={"file": ("b.png", png_bytes(9, 9))}, headers=bob)
            (delivery,) = wait_for(receiver.delivered, timeout_s=5)
        assert delivery["time"] - sent < 1.5
    finally:
        slow.close()


def test_reregistering_keeps_pending_retries(make_settings) -> None:
    first, second = Receiver(fail_first=100), Receiver()
    try:
        settings = make_settings(webhook_backoff_s=0.5, webhook_backoff_max_s=0.5)
        with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as c:
            c.post("/v1/webhooks", json={"event_type": "task_completed", "url": first.url})
            c.post("/v1/predict", files={"file": ("a.png", png_bytes())})
            wait_for(lambda: first.attempts >= 1)
            secret = c.post("/v1/webhooks", json={"event_type": "task_completed", "url": second.url}).json()[
                "secret"
            ]
            (delivery,) = wait_for(second.delivered, timeout_s=5)
        headers = delivery["headers"]
        assert verify(secret, headers["X-Webhook-Timestamp"], delivery["body"], headers[SIGNATURE_HEADER])
        assert delivery["headers"]["X-Webhook-Id"] == first.requests[0]["headers"]["X-Webhook-Id"]
    finally:
        first.close()
        second.close()


def test_registration_error_reveals_no_dns_answer(make_settings, resolver) -> None:
    resolver.answer("intranet.example", ["10.20.30.40"])
    with TestClient(create_app(make_settings(), backend=FakeBackend()), raise_server_exceptions=False) as c:
        refused = c.post(
            "/v1/webhooks", json={"event_type": "task_failed", "url": "https://intranet.example/"}
        )
        unknown = c.post(
            "/v1/webhooks", json={"event_type": "task_failed", "url": "https://nxdomain.example/"}
        )
    assert refused.status_code == unknown.status_code == 422
    assert "10.20.30.40" not in refused.text
    assert refused.json()["message"].replace("intranet", "nxdomain") == unknown.json()["message"]


@pytest.mark.parametrize(
    "address", ["2002:7f00:1::1", "2002:a00:1::1", "2002:808:808::1", "fec0::1", "feff::1", "64:ff9b::a00:1"]
)
def test_6to4_site_local_and_nat64_are_not_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address)) is False


def test_no_webhook_secret_at_rest(make_settings, tmp_path: Path) -> None:
    settings = make_settings()
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as c:
        secret = c.post(
            "/v1/webhooks", json={"event_type": "task_failed", "url": "http://127.0.0.1:9/h"}
        ).json()["secret"]
        with sqlite3.connect(settings.database_path) as db:
            (stored,) = db.execute("SELECT secret FROM webhooks").fetchone()
    assert len(secret) >= 40 and secret not in stored
    for path in settings.database_path.parent.glob("gateway.sqlite3*"):
        assert secret.encode() not in path.read_bytes(), path.name


def test_pinned_post_rejects_after_deadline_without_reading_forever() -> None:
    """The deadline bounds connect + headers + body together (unit level, loopback receiver)."""
    from gateway.service.ssrf import Target
    from gateway.service.webhook_http import AttemptFailed, build_client, post_pinned

    receiver = scripted(lambda ref: trickle(ref, every_s=0.1))
    target = Target(receiver.url, "127.0.0.1", receiver.port, (ipaddress.ip_address("127.0.0.1"),))

    async def run() -> float:
        start = time.monotonic()
        async with build_client() as client:
            with pytest.raises(AttemptFailed, match=r"within 0\.5 s"):
                await post_pinned(client, target, b"{}", {}, deadline_s=0.5)
        return time.monotonic() - start

    try:
        assert asyncio.run(run()) < 1.5
    finally:
        receiver.close()


def test_redirects_are_not_followed(make_settings, receiver: Receiver) -> None:
    def redirect(ref):
        def answer(conn) -> None:
            ref[0].send(conn, f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {receiver.url}\r\n\r\n".encode())

        return answer

    hop = scripted(redirect)
    try:
        settings = make_settings(webhook_max_attempts=2)
        with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as c:
            c.post("/v1/webhooks", json={"event_type": "task_completed", "url": hop.url})
            c.post("/v1/predict", files={"file": ("a.png", png_bytes())})
            wait_for(lambda: outbox(c).get("failed"))
        assert hop.attempts == 2 and receiver.requests == []
    finally:
        hop.close()


def test_name_resolution_is_inside_the_attempt_deadline(make_settings, resolver) -> None:
    resolver.answer("stall.example", ["127.0.0.1"])
    resolver.stall["stall.example"] = (1, 1.5)  # registration answers, every delivery lookup hangs
    settings = make_settings(webhook_timeout_s=0.5, webhook_max_attempts=1)
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as c:
        c.post("/v1/webhooks", json={"event_type": "task_completed", "url": "http://stall.example:9/h"})
        c.post("/v1/predict", files={"file": ("a.png", png_bytes())})
        start = time.monotonic()
        wait_for(lambda: outbox(c).get("failed"), timeout_s=5)
        assert time.monotonic() - start < 1.4
        with sqlite3.connect(settings.database_path) as db:
            (error,) = db.execute("SELECT last_error FROM outbox").fetchone()
    assert error == "the host did not resolve within 0.5 s"
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as c:
        slow = c.post("/v1/webhooks", json={"event_type": "task_failed", "url": "http://stall.example:9/h"})
    assert (slow.status_code, slow.json()["message"]) == (422, "The webhook host did not resolve in time.")
