"""Issue 13 item 7 (JWT): a maximum lifetime, a minimum secret length, ``aud`` when configured
(and a token carrying an ``aud`` refused when none is configured)."""

from __future__ import annotations

import time

import jwt
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import SettingsError, load_settings
from tests.gateway.support import FakeBackend

SECRET = "s" * 48


def status(make_settings, claims: dict, **settings) -> tuple[int, str]:
    app = create_app(make_settings(auth_enabled=True, jwt_secret=SECRET, **settings), backend=FakeBackend())
    with TestClient(app, raise_server_exceptions=False) as client:
        token = jwt.encode({"sub": "carol", "scope": "predict", **claims}, SECRET, algorithm="HS256")
        response = client.get("/v1/jobs/" + "a" * 32, headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.json()["message"]


def test_tokens_live_at_most_the_maximum(make_settings) -> None:
    now = int(time.time())
    assert status(make_settings, {"exp": now + 3600})[0] == 404  # accepted: the job is unknown
    far = status(make_settings, {"exp": now + 400 * 24 * 3600})
    assert far == (401, "The bearer token lives longer than the maximum of 86400 s.")
    long_iat = status(make_settings, {"exp": now + 60, "iat": now - 3 * 24 * 3600})
    assert long_iat[0] == 401
    short = status(make_settings, {"exp": now + 600}, jwt_max_lifetime_s=300)
    assert short == (401, "The bearer token lives longer than the maximum of 300 s.")


def test_audience_is_checked_when_configured(make_settings) -> None:
    exp = int(time.time()) + 60
    assert status(make_settings, {"exp": exp, "aud": "mlsharp"}, jwt_audience="mlsharp")[0] == 404
    assert status(make_settings, {"exp": exp, "aud": "billing"}, jwt_audience="mlsharp")[0] == 401
    assert status(make_settings, {"exp": exp}, jwt_audience="mlsharp")[0] == 401
    # a token minted for another service that shares the secret is not ours either
    assert status(make_settings, {"exp": exp, "aud": "billing"}) == (
        401,
        "The bearer token is meant for another audience.",
    )


@pytest.mark.parametrize(
    ("algorithm", "length", "ok"), [("HS256", 31, False), ("HS256", 32, True), ("HS512", 48, False)]
)
def test_secret_must_be_as_long_as_the_hash(algorithm: str, length: int, ok: bool) -> None:
    overrides = {"jwt_secret": "k" * length, "jwt_algorithm": algorithm}
    if ok:
        assert load_settings(overrides=overrides).jwt_secret is not None
    else:
        with pytest.raises(SettingsError, match=f"jwt_secret must be at least .* bytes for {algorithm}"):
            load_settings(overrides=overrides)
