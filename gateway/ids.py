"""Unguessable ids and whitelisted file names.

The seed used 8 hex characters (32 bits, enumerable). Ours carry 192 random bits, are validated
by one regex before they reach storage, and file names are a strict whitelist.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path

#: 24 random bytes -> 32 urlsafe base64 characters (>= 128 bits required)
ID_BYTES = 24
ID_PATTERN = r"^[A-Za-z0-9_-]{32}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_ID_RE = re.compile(ID_PATTERN)
_NAME_RE = re.compile(NAME_PATTERN)


_ID_SEGMENT_RE = re.compile(r"(?<=/)[A-Za-z0-9_-]{32}(?=/|$)")


def short_hash(value: str) -> str:
    """12 hex characters of SHA-256: enough to correlate log lines, useless as a capability."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def redact_ids(path: str) -> str:
    """A URL path with every id-shaped segment replaced by ``~<short hash>`` (ids in ``/files``
    URLs are the only thing guarding the results, so logs must not carry them)."""
    return _ID_SEGMENT_RE.sub(lambda match: "~" + short_hash(match.group(0)), path)


def new_id() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def is_valid_id(value: str) -> bool:
    return bool(_ID_RE.fullmatch(value))


def is_valid_name(value: str) -> bool:
    return bool(_NAME_RE.fullmatch(value)) and ".." not in value


def safe_stem(filename: str | None, fallback: str = "image") -> str:
    """A file-system-safe stem from an uploaded file name (never trusted as a path)."""
    stem = Path(str(filename or "").replace("\\", "/")).name.rsplit(".", 1)[0]
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:48]
    return stem or fallback
