"""Install and locate perf_analyzer in a private venv (``.venv/perf-tools``).

Why a private venv: the project venv pins tritonclient 2.73, whose wheel no longer ships the
binary; 2.55+ binaries need glibc 2.38 (Debian 12 has 2.36). The 2.50.0 wheel's binary runs here
once ``libb64.so.0d`` and ``libcudart.so.12`` are supplied, which we symlink from the
nvidia-pytriton wheel's bundled libraries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

#: beside the running environment (``.venv/perf-tools`` for the project venv), never in site-packages
DEFAULT_TOOLS = Path(sys.prefix) / "perf-tools"
TRITONCLIENT_PIN = "tritonclient==2.50.0"
_MISSING_LIBS = {"libcudart.so.12": "libcudart-", "libb64.so.0d": "libb64-"}


class PerfToolError(RuntimeError):
    """perf_analyzer could not be installed or made runnable."""


def _pytriton_libs() -> Path:
    """The ``nvidia_pytriton.libs`` directory of the running interpreter's site-packages."""
    for entry in sys.path:
        candidate = Path(entry) / "nvidia_pytriton.libs"
        if candidate.is_dir():
            return candidate
    raise PerfToolError("nvidia_pytriton.libs not found: install nvidia-pytriton into this venv")


def _link_libs(lib_dir: Path) -> None:
    """Symlink the two libraries the 2.50.0 binary lacks from the pytriton wheel."""
    lib_dir.mkdir(parents=True, exist_ok=True)
    source = _pytriton_libs()
    for soname, prefix in _MISSING_LIBS.items():
        matches = sorted(source.glob(f"{prefix}*"))
        if not matches:
            raise PerfToolError(f"{prefix}* missing from {source}")
        link = lib_dir / soname
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(matches[0])


class PerfAnalyzer:
    """A runnable perf_analyzer: the binary plus the environment it needs."""

    def __init__(self, tools_dir: Path = DEFAULT_TOOLS) -> None:
        self.tools_dir = Path(tools_dir)
        self.binary = self.tools_dir / "bin" / "perf_analyzer"
        self.lib_dir = self.tools_dir / "pa-lib"

    def env(self) -> dict[str, str]:
        """Process environment with the symlinked libraries first on the loader path."""
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [str(self.lib_dir), env.get("LD_LIBRARY_PATH")])
        )
        return env

    def works(self) -> bool:
        """True when ``perf_analyzer --version`` runs (all shared libraries resolve)."""
        if not self.binary.exists():
            return False
        proc = subprocess.run(
            [str(self.binary), "--version"], env=self.env(), capture_output=True, text=True, check=False
        )
        return "Perf Analyzer Version" in proc.stdout + proc.stderr

    def ensure(self) -> PerfAnalyzer:
        """Install on first use (a venv + the pinned wheel, no deps), then link the libraries."""
        if not self.binary.exists():
            if not (self.tools_dir / "bin" / "python").exists():
                subprocess.run([sys.executable, "-m", "venv", str(self.tools_dir)], check=True)
            pip = [str(self.tools_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
            proc = subprocess.run([*pip, TRITONCLIENT_PIN], capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not self.binary.exists():
                raise PerfToolError(f"pip install {TRITONCLIENT_PIN} failed:\n{proc.stdout}{proc.stderr}")
        if not self.works():
            _link_libs(self.lib_dir)
        if not self.works():
            ldd = shutil.which("ldd")
            detail = (
                subprocess.run([ldd, str(self.binary)], capture_output=True, text=True).stdout if ldd else ""
            )
            raise PerfToolError(f"perf_analyzer does not run:\n{detail}")
        return self
