"""Webhook signing secrets that are never stored: derived from a server key and a stored nonce.

A receiver needs the secret itself (HMAC), so it cannot be hashed one-way. Instead the database
keeps only ``derived:v1:<nonce>`` and the secret is HMAC-SHA256(server key, nonce): a copied or
backed-up SQLite file reveals no secret without the key. The key comes from the
``webhook_secret_key`` setting or, if unset, from a 0600 key file created next to the database.
Rows written before this change hold the plain secret and keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from gateway.settings import Settings

PREFIX = "derived:v1:"
KEY_FILE_NAME = "webhook-secret.key"


def _load_or_create_key(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    key = secrets.token_urlsafe(48).encode()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key


class SecretDeriver:
    """Makes new (stored form, secret) pairs and recovers the secret from the stored form."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretDeriver:
        if settings.webhook_secret_key is not None:
            return cls(settings.webhook_secret_key.get_secret_value().encode())
        return cls(_load_or_create_key(settings.database_path.parent / KEY_FILE_NAME))

    def _derive(self, nonce: str) -> str:
        digest = hmac.new(self._key, b"mlsharp-webhook-secret\0" + nonce.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def new(self) -> tuple[str, str]:
        """(what the database stores, the secret shown once to the caller)."""
        nonce = secrets.token_urlsafe(24)
        return PREFIX + nonce, self._derive(nonce)

    def reveal(self, stored: str) -> str:
        return self._derive(stored.removeprefix(PREFIX)) if stored.startswith(PREFIX) else stored
