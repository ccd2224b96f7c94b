"""Real components the suite needs (tritonserver, perf_analyzer, kubectl, redis-server, PostgreSQL,
SeaweedFS, Chromium, image codecs): skip where one is missing on a workstation, FAIL under
``CI=true``.

Why fail in CI: a broken install step would otherwise show up only as skips on a green run. Only
missing hardware (CUDA, a CPU feature) may skip everywhere; those tests do not come through here.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest

#: how to install each executable the tests look up by name (the hint of the skip/fail message)
INSTALL_HINTS = {
    "redis-server": "Debian package redis-server (scripts/setup.sh installs it)",
    "openssl": "Debian package openssl",
    "kubectl": "a kubectl binary on PATH",
    "perf_analyzer": "pip tritonclient[perf_analyzer]",
}


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def missing(message: str) -> NoReturn:
    """A required component is absent: skip here, fail under CI=true (``pytrace=False``: the
    message is the whole story)."""
    if in_ci():
        pytest.fail(f"CI=true and a real component is missing: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require_executable(name: str) -> str:
    """The executable's path on PATH, or :func:`missing`."""
    found = shutil.which(name)
    if found is None:
        missing(f"{name} is not installed ({INSTALL_HINTS.get(name, 'not on PATH')})")
    return found


def require_module(name: str, hint: str) -> ModuleType:
    """An optional Python package, imported, or :func:`missing` (unlike ``importorskip``)."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        missing(f"the {name!r} Python package is not importable ({hint}): {error}")


def require_triton() -> None:
    """The pip tritonserver binary (nvidia-pytriton, installed by scripts/setup.sh)."""
    from mlsharp.triton import paths

    try:
        paths.find_triton()
    except paths.TritonNotInstalledError as error:
        missing(f"tritonserver is not installed (pip nvidia-pytriton): {error}")
