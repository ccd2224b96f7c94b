"""API keys (stored hashed), JWT bearer tokens, scopes and per-principal token buckets.

Off by default for local use (everyone is the ``anonymous`` admin). When on: a key is looked up
by comparing its SHA-256 against every configured hash in constant time (no early exit, no
plain-text key in memory or config); a JWT must be signed with the configured secret (at least
as long as the hash, checked at start-up), carry ``exp`` within ``jwt_max_lifetime_s``, and carry
``aud`` exactly when ``jwt_audience`` is configured; scopes are ``predict`` (predict, jobs) and
``admin`` (cache, webhooks; implies predict).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.errors import Forbidden, RateLimited, Unauthorized
from gateway.settings import Settings

ALL_SCOPES = frozenset({"predict", "admin"})
#: clock skew tolerated by the maximum-lifetime check
JWT_LEEWAY_S = 30


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]
    rate_per_minute: float | None = None

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise Forbidden(f"This credential lacks the {scope!r} scope.")


ANONYMOUS = Principal("anonymous", ALL_SCOPES)


def hash_key(key: str) -> str:
    """The hex SHA-256 stored in settings for an API key (``python -m gateway hash-key``)."""
    return hashlib.sha256(key.encode()).hexdigest()


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def authenticate(self, api_key: str | None, authorization: str | None) -> Principal:
        if not self.settings.auth_enabled:
            return ANONYMOUS
        token = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthorized("Use 'Authorization: Bearer <token>' or the X-API-Key header.")
            token = value.strip()
        if api_key:
            return self._from_key(api_key)
        if token is None:
            raise Unauthorized("Authentication required: send an X-API-Key header or a bearer token.")
        if token.count(".") == 2:
            return self._from_jwt(token)
        return self._from_key(token)

    def _from_key(self, key: str) -> Principal:
        digest = hash_key(key)
        match = None
        for entry in self.settings.api_keys:  # no early exit: timing says nothing about position
            if hmac.compare_digest(digest, entry.sha256):
                match = entry
        if match is None:
            raise Unauthorized("Invalid API key.")
        return Principal(f"key:{match.name}", frozenset(match.scopes), match.rate_per_minute)

    def _from_jwt(self, token: str) -> Principal:
        secret = self.settings.jwt_secret
        if secret is None:
            raise Unauthorized("Bearer JWTs are not accepted on this server.")
        audience = self.settings.jwt_audience
        try:
            claims = jwt.decode(
                token,
                secret.get_secret_value(),
                algorithms=[self.settings.jwt_algorithm],
                audience=audience,
                options={"require": ["exp", "sub"], "verify_aud": audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The bearer token has expired.") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("The bearer token is invalid.") from None
        if audience is None and "aud" in claims:  # minted for another service sharing the secret
            raise Unauthorized("The bearer token is meant for another audience.")
        self._check_lifetime(claims)
        raw = claims.get("scopes", claims.get("scope", ""))
        scopes = (
            raw.split() if isinstance(raw, str) else [str(s) for s in raw] if isinstance(raw, list) else []
        )
        return Principal(f"jwt:{claims['sub']}"[:128], frozenset(scopes) & ALL_SCOPES)

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        """A stolen token must not work for months: exp (and exp - iat) within the maximum."""
        longest = self.settings.jwt_max_lifetime_s + JWT_LEEWAY_S
        exp = claims["exp"]
        iat = claims.get("iat")
        if not isinstance(exp, int | float) or exp - time.time() > longest:
            raise Unauthorized(
                f"The bearer token lives longer than the maximum of {self.settings.jwt_max_lifetime_s:g} s."
            )
        if isinstance(iat, int | float) and exp - iat > longest:
            raise Unauthorized(
                f"The bearer token lives longer than the maximum of {self.settings.jwt_max_lifetime_s:g} s."
            )


class RateLimiter:
    """Token bucket per principal (or per client address for anonymous callers)."""

    MAX_BUCKETS = 10_000

    def __init__(self, per_minute: float, burst: int) -> None:
        self.per_minute = per_minute
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, key: str, per_minute: float | None = None) -> None:
        rate = self.per_minute if per_minute is None else per_minute
        if rate <= 0:
            return
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * rate / 60.0)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            raise RateLimited(
                f"Rate limit of {rate:g} requests per minute exceeded.",
                retry_after_s=(1.0 - tokens) * 60.0 / rate,
            )
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > self.MAX_BUCKETS:
            self._buckets = dict(list(self._buckets.items())[-self.MAX_BUCKETS // 2 :])
