"""The 7-day result cache of ``mlsharp tune``: one JSON file per key under ``$XDG_CACHE_HOME``.

Why keyed this way: a tuning result is only transferable to the same hardware, the same weights
(model id) and preset/target, the same question (objective and bound) and the same search (space,
concurrency, measurement settings). Everything else, such as the repository path, is left out so
that a re-export of the same model on the same machine reuses the result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mlsharp.fileio import atomic_write

VALIDITY = timedelta(days=7)
CACHE_SCHEMA = 1


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/mlsharp/tune``, default ``~/.cache/mlsharp/tune``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlsharp" / "tune"


def cache_key(material: Mapping[str, Any]) -> str:
    """sha256 over canonical JSON (sorted keys, no whitespace): stable across runs and dict order."""
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_material(
    *,
    hardware: Mapping[str, Any],
    model_id: str,
    preset: str,
    target: str,
    gpu_runtime: str,
    objective: Mapping[str, Any],
    space: Mapping[str, Any],
    concurrency: list[int] | None,
    measurement: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything a result depends on; ``concurrency`` None means derived per candidate."""
    return {
        "schema": CACHE_SCHEMA,
        "hardware": dict(hardware),
        "model_id": model_id,
        "preset": preset,
        "target": target,
        "gpu_runtime": gpu_runtime if target == "gpu" else None,
        "objective": dict(objective),
        "space": dict(space),
        "concurrency": concurrency if concurrency else "derived",
        "measurement": dict(measurement),
    }


@dataclass(frozen=True)
class CacheEntry:
    """A stored result: when it was measured and the tuning document (winner, points, ...)."""

    key: str
    tuned_at: datetime
    document: dict[str, Any]

    @property
    def valid_until(self) -> datetime:
        """The moment the entry stops being used."""
        return self.tuned_at + VALIDITY

    def is_valid(self, now: datetime) -> bool:
        """Younger than 7 days (and not from the future: a clock jump never extends a result)."""
        return self.tuned_at <= now < self.valid_until


class TuneCache:
    """Entries in ``directory/<key>.json``; unreadable entries count as absent."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        """Where the entry for ``key`` lives."""
        return self.directory / f"{key}.json"

    def load(self, key: str) -> CacheEntry | None:
        """The stored entry (valid or not), or None when missing or unreadable."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            stored = json.loads(self.path(key).read_text())
            if stored.get("key") == key:
                tuned_at = datetime.fromisoformat(stored["tuned_at"])
                if tuned_at.tzinfo is None:  # written by hand: read as UTC, never compare naive/aware
                    tuned_at = tuned_at.replace(tzinfo=UTC)
                return CacheEntry(key, tuned_at, stored["document"])
        return None

    def store(self, key: str, tuned_at: datetime, document: Mapping[str, Any]) -> Path:
        """Write (atomically) the entry for ``key``."""
        payload = {"key": key, "tuned_at": tuned_at.isoformat(), "document": dict(document)}
        path = self.path(key)
        atomic_write(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())
        return path
