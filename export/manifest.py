"""``export_manifest.json``: what was exported, from which weights, with which tools, how well it matched.

Why: an ONNX file alone does not say whether it came from the official checkpoint or random
weights, which exporter and opset made it, or how far it is from eager PyTorch. Deployments and
the gateway read this file instead of guessing.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxscript", "onnxconverter-common", "numpy", "nvidia-pytriton")


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that shape an export (None when absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, streamed (model data files are GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: Path, root: Path) -> dict[str, Any]:
    """Name relative to the export directory, size and hash."""
    return {"path": str(path.relative_to(root)), "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def write_manifest(path: Path, manifest: dict[str, Any]) -> Path:
    """Stamp creation time and command line, then write sorted, indented JSON."""
    manifest = {
        **manifest,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "libraries": library_versions(),
    }
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path
