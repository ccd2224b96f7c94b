"""Webhooks: HMAC signatures, SSRF guard, background delivery, retries with backoff, owners."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.service.ssrf import UnsafeTarget, check_target, is_public, parse_allow_list
from gateway.service.webhooks import SIGNATURE_HEADER, sign, verify
from tests.gateway.support import FakeBackend, Receiver, png_bytes, wait_for


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    # independent computation of the documented scheme
    import hashlib
    import hmac

    body = b'{"event":"task_completed"}'
    expected = "sha256=" + hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", "1700000000", body) == expected
    assert verify("s3cret", "1700000000", body, expected)
    assert not verify("s3cret", "1700000001", body, expected)
    assert not verify("other", "1700000000", body, expected)
    assert not verify("s3cret", "1700000000", body + b" ", expected)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_is_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9/x", "non-public address (127.0.0.1)"),
        ("http://localhost/x", "non-public address"),
        ("http://10.0.0.5/x", "non-public address (10.0.0.5)"),
        ("http://169.254.169.254/latest/meta-data", "non-public address (169.254.169.254)"),
        ("http://[::1]:8080/", "non-public address (::1)"),
        ("http://0x7f000001/", "resolves to a non-public address;"),  # no DNS answer in the text
        ("ftp://example.com/x", "must use http or https"),
        ("file:///etc/passwd", "must use http or https"),
        ("http://user:pw@example.com/", "must not contain credentials"),
        ("http:///nohost", "has no host"),
        ("http://example.com:99999/", "not a valid URL"),
    ],
)
def test_ssrf_guard_refuses(url: str, reason: str) -> None:
    with pytest.raises(UnsafeTarget) as error:
        asyncio.run(check_target(url, parse_allow_list([])))
    assert reason in str(error.value)


def test_every_resolved_address_must_be_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name with one public and one private answer is refused (no real DNS is queried)."""
    answers = {
        "mixed.example": ["93.184.216.34", "10.0.0.7"],
        "public.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
    }

    def fake_getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    allow = parse_allow_list([])
    asyncio.run(check_target("https://public.example/hook", allow))
    with pytest.raises(UnsafeTarget, match="non-public address") as mixed:
        asyncio.run(check_target("https://mixed.example/hook", allow))
    with pytest.raises(UnsafeTarget, match="does not resolve") as nowhere:
        asyncio.run(check_target("https://nowhere.example/hook", allow))
    # one message for both: the caller learns neither the internal answer nor whether it exists
    assert "10.0.0.7" not in str(mixed.value)
    assert str(mixed.value).replace("mixed", "nowhere") == str(nowhere.value)


def test_allow_list_lets_listed_hosts_and_networks_through() -> None:
    allow = parse_allow_list(["127.0.0.1", "10.0.0.0/8", "hooks.internal"])
    asyncio.run(check_target("http://127.0.0.1:8000/hook", allow))
    asyncio.run(check_target("http://10.2.3.4/hook", allow))
    asyncio.run(check_target("https://hooks.internal/x", allow))  # host allowed without resolving
    with pytest.raises(UnsafeTarget):
        asyncio.run(check_target("http://192.168.0.1/", allow))
    with pytest.raises(ValueError, match="neither a host name"):
        parse_allow_list(["not a host!"])


def test_registration_list_delete_and_ssrf_refusal(client: TestClient, receiver: Receiver) -> None:
    assert client.get("/v1/webhooks").json() == {"enabled": True, "webhooks": {}}
    created = client.post("/v1/webhooks", json={"event_type": "task_completed", "url": receiver.url})
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["status"] == "success" and body["event_type"] == "task_completed"
    assert len(body["secret"]) >= 40
    assert client.get("/v1/webhooks").json() == {
        "enabled": True,
        "webhooks": {"task_completed": receiver.url},
    }
    refused = client.post("/v1/webhooks", json={"event_type": "task_failed", "url": "http://192.168.1.10/x"})
    assert refused.status_code == 422
    assert "non-public address (192.168.1.10)" in refused.json()["message"]
    assert client.delete("/v1/webhooks/task_completed").json()["status"] == "success"
    assert client.delete("/v1/webhooks/task_completed").status_code == 404
    assert client.get("/v1/webhooks").json()["webhooks"] == {}


def test_completed_event_is_signed_and_matches_the_contract(client: TestClient, receiver: Receiver) -> None:
    secret = client.post("/v1/webhooks", json={"event_type": "task_completed", "url": receiver.url}).json()[
        "secret"
    ]
    result = client.post("/v1/predict", files={"file": ("a.png", png_bytes())}).json()
    (delivery,) = wait_for(receiver.delivered)
    headers = {k.lower(): v for k, v in delivery["headers"].items()}
    assert headers["x-webhook-event"] == "task_completed"
    timestamp = headers["x-webhook-timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    assert verify(secret, timestamp, delivery["body"], headers[SIGNATURE_HEADER.lower()])
    event = receiver.json_bodies()[0]
    assert set(event) == {"event", "task_id", "status", "url", "processing_time", "timestamp"}
    assert (event["event"], event["task_id"], event["url"]) == (
        "task_completed",
        result["task_id"],
        result["url"],
    )


def test_failed_event_for_a_bad_image(client: TestClient, receiver: Receiver) -> None:
    client.post("/v1/webhooks", json={"event_type": "task_failed", "url": receiver.url})
    truncated = png_bytes(64, 64)[:80]
    response = client.post("/v1/predict", files={"file": ("bad.png", truncated)})
    assert response.status_code == 400
    event = wait_for(receiver.json_bodies)[0]
    assert set(event) == {"event", "task_id", "status", "error", "code", "timestamp"}
    assert event["event"] == "task_failed" and "truncated" in event["error"]
    assert event["code"] == "invalid_image"


def test_retries_with_backoff_until_the_receiver_recovers(make_settings) -> None:
    receiver = Receiver(fail_first=2)
    try:
        app = create_app(
            make_settings(webhook_backoff_s=0.2, webhook_backoff_max_s=5.0), backend=FakeBackend()
        )
        with TestClient(app, raise_server_exceptions=False) as client:
            client.post("/v1/webhooks", json={"event_type": "task_completed", "url": receiver.url})
            client.post("/v1/predict", files={"file": ("a.png", png_bytes())})
            wait_for(receiver.delivered)
            stats = client.get("/v1/stats").json()["webhooks"]
        assert [r["status"] for r in receiver.requests] == [500, 500, 204]
        gaps = [b["time"] - a["time"] for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
        assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # 0.2 s, then doubled
        # every attempt is signed with the same delivery id
        assert len({r["headers"]["X-Webhook-Id"] for r in receiver.requests}) == 1
        assert stats == {"delivered": 1}
    finally:
        receiver.close()


def test_gives_up_after_max_attempts(make_settings) -> None:
    receiver = Receiver(fail_first=100)
    try:
        app = create_app(make_settings(webhook_max_attempts=3), backend=FakeBackend())
        with TestClient(app, raise_server_exceptions=False) as client:
            client.post("/v1/webhooks", json={"event_type": "task_completed", "url": receiver.url})
            client.post("/v1/predict", files={"file": ("a.png", png_bytes())})
            wait_for(lambda: client.get("/v1/stats").json()["webhooks"].get("failed"))
            time.sleep(0.3)
        assert receiver.attempts == 3
    finally:
        receiver.close()


def test_hooks_belong_to_their_owner(make_settings, receiver: Receiver) -> None:
    from gateway.service.auth import hash_key

    keys = [
        {"name": "alice", "sha256": hash_key("alice-key"), "scopes": ["admin"]},
        {"name": "bob", "sha256": hash_key("bob-key"), "scopes": ["admin"]},
    ]
    app = create_app(make_settings(auth_enabled=True, api_keys=keys), backend=FakeBackend())
    with TestClient(app, raise_server_exceptions=False) as client:
        alice, bob = {"X-API-Key": "alice-key"}, {"X-API-Key": "bob-key"}
        client.post("/v1/webhooks", json={"event_type": "task_completed", "url": receiver.url}, headers=alice)
        assert client.get("/v1/webhooks", headers=bob).json()["webhooks"] == {}
        client.post("/v1/predict", files={"file": ("b.png", png_bytes())}, headers=bob)
        mine = client.post("/v1/predict", files={"file": ("a.png", png_bytes(8, 8))}, headers=alice).json()
        wait_for(receiver.delivered)
        time.sleep(0.3)
    assert [e["task_id"] for e in receiver.json_bodies()] == [mine["task_id"]]
