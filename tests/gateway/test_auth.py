"""Auth: hashed API keys, JWT bearer tokens with scopes, per-key token-bucket rate limits."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.service.auth import RateLimiter, hash_key
from tests.gateway.support import FakeBackend, png_bytes

SECRET = "test-jwt-secret-with-enough-length-for-hs256"


@pytest.fixture
def secured(make_settings) -> Iterator[TestClient]:
    keys = [
        {"name": "user", "sha256": hash_key("user-key"), "scopes": ["predict"]},
        {"name": "ops", "sha256": hash_key("ops-key"), "scopes": ["admin"]},
        {"name": "slow", "sha256": hash_key("slow-key"), "scopes": ["predict"], "rate_per_minute": 2},
    ]
    settings = make_settings(auth_enabled=True, api_keys=keys, jwt_secret=SECRET, rate_limit_burst=2)
    with TestClient(create_app(settings, backend=FakeBackend()), raise_server_exceptions=False) as client:
        yield client


def token(scopes: str, *, exp_in: float = 300, secret: str = SECRET, sub: str = "carol") -> str:
    return jwt.encode(
        {"sub": sub, "scope": scopes, "exp": int(time.time() + exp_in)}, secret, algorithm="HS256"
    )


def predict(client: TestClient, headers: dict[str, str]):
    return client.post("/v1/predict", files={"file": ("a.png", png_bytes())}, headers=headers)


def test_keys_are_checked_and_scoped(secured: TestClient) -> None:
    missing = predict(secured, {})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "Authentication required" in missing.json()["message"]
    assert predict(secured, {"X-API-Key": "wrong"}).json()["message"] == "Invalid API key."
    assert predict(secured, {"X-API-Key": "user-key"}).status_code == 200
    assert predict(secured, {"Authorization": "Bearer user-key"}).status_code == 200
    forbidden = secured.get("/v1/cache", headers={"X-API-Key": "user-key"})
    assert forbidden.status_code == 403
    assert forbidden.json()["message"] == "This credential lacks the 'admin' scope."
    assert secured.get("/v1/cache", headers={"X-API-Key": "ops-key"}).status_code == 200
    assert predict(secured, {"X-API-Key": "ops-key"}).status_code == 200  # admin implies predict
    # public endpoints stay public
    assert secured.get("/v1/health").status_code == 200
    assert secured.get("/metrics").status_code == 200


def test_jwt_bearer_tokens(secured: TestClient) -> None:
    assert predict(secured, {"Authorization": f"Bearer {token('predict')}"}).status_code == 200
    admin_only = secured.get("/v1/webhooks", headers={"Authorization": f"Bearer {token('predict')}"})
    assert admin_only.status_code == 403
    assert (
        secured.get("/v1/webhooks", headers={"Authorization": f"Bearer {token('admin')}"}).status_code == 200
    )
    expired = predict(secured, {"Authorization": f"Bearer {token('predict', exp_in=-10)}"})
    assert (expired.status_code, expired.json()["message"]) == (401, "The bearer token has expired.")
    forged = predict(secured, {"Authorization": f"Bearer {token('admin', secret='x' * 40)}"})
    assert (forged.status_code, forged.json()["message"]) == (401, "The bearer token is invalid.")
    none_alg = jwt.encode(
        {"sub": "x", "scope": "admin", "exp": int(time.time()) + 60}, None, algorithm="none"
    )
    assert predict(secured, {"Authorization": f"Bearer {none_alg}"}).status_code == 401
    basic = predict(secured, {"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401 and "Bearer" in basic.json()["message"]


def test_jobs_belong_to_their_owner(secured: TestClient) -> None:
    job = secured.post(
        "/v1/jobs", files=[("files", ("a.png", png_bytes()))], headers={"X-API-Key": "user-key"}
    ).json()
    assert secured.get(job["status_url"], headers={"X-API-Key": "user-key"}).status_code == 200
    other = secured.get(job["status_url"], headers={"Authorization": f"Bearer {token('predict')}"})
    assert other.status_code == 404
    assert secured.get(job["status_url"], headers={"X-API-Key": "ops-key"}).status_code == 200


def test_per_key_rate_limit(secured: TestClient) -> None:
    headers = {"X-API-Key": "slow-key"}
    assert [predict(secured, headers).status_code for _ in range(2)] == [200, 200]  # the burst
    limited = predict(secured, headers)
    assert limited.status_code == 429
    assert limited.json()["message"] == "Rate limit of 2 requests per minute exceeded."
    assert 1 <= int(limited.headers["retry-after"]) <= 31
    assert predict(secured, {"X-API-Key": "user-key"}).status_code == 200  # other keys unaffected


def test_token_bucket_refills() -> None:
    limiter = RateLimiter(per_minute=600, burst=1)  # one token every 0.1 s
    limiter.check("k")
    with pytest.raises(Exception, match="Rate limit"):
        limiter.check("k")
    time.sleep(0.12)
    limiter.check("k")
    RateLimiter(per_minute=0, burst=1).check("unlimited")
