"""A fingerprint of the machine a tuning result was measured on.

Why these fields: the best batch/instance settings depend on the processor, how many cores and how
much memory there are, which GPUs with how much memory, and which Triton build serves; anything
else (hostname, load, uptime) would only make identical machines miss each other's cache.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

KIB_PER_GIB = 1024 * 1024


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first ``model name`` of /proc/cpuinfo (falls back to platform.processor())."""
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def memory_gib(meminfo: Path = Path("/proc/meminfo")) -> int:
    """Total memory in whole GiB (MemTotal moves by a few MB between boots; GiB does not)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / KIB_PER_GIB)
    return 0


def gpus(timeout_s: float = 15.0) -> list[dict[str, Any]]:
    """Name and memory (MiB) of each NVIDIA GPU, from nvidia-smi; [] where there is none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        proc = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    found = []
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        name, _, memory = line.rpartition(",")
        with contextlib.suppress(ValueError):
            found.append({"name": name.strip(), "memory_mib": int(float(memory.strip()))})
    return found


def triton_build() -> str:
    """The tritonserver the launcher runs: wheel version and binary size (it has no --version)."""
    from mlsharp.triton import paths

    try:
        wheel = importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        wheel = "unknown"
    try:
        size = paths.find_triton().server_binary.stat().st_size
    except (paths.TritonNotInstalledError, OSError):
        return f"nvidia-pytriton {wheel}, tritonserver not found"
    return f"nvidia-pytriton {wheel}, tritonserver binary {size} bytes"


def fingerprint() -> dict[str, Any]:
    """The hardware part of the cache key (also recorded in tuning.json)."""
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count() or 0,
        "memory_gib": memory_gib(),
        "gpus": gpus(),
        "tritonserver": triton_build(),
    }
