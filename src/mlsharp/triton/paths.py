"""Where the pip-installed Triton lives, and the Python environment its python-backend stubs use.

Why this exists: the ``nvidia-pytriton`` wheel ships a real ``tritonserver`` (2.51.0, = NGC 24.10)
but not in a directly runnable layout: the python-backend stub must be copied next to
``libtriton_python.so``, the stub needs the matching ``libpython3.X.so`` and the wheel's bundled
libraries on ``LD_LIBRARY_PATH``, and its embedded interpreter (isolated, PYTHONPATH ignored)
takes its prefix from the first ``python3`` on ``PATH``.

One more trap, measured here: the 2.51 stub is built against NumPy 1.x and silently corrupts
tensors under NumPy 2 (an input ``[1, 2, 3]`` arrived as ``[1, 1, 1]``; outputs failed with
"output tensor shape does not match size"). So the stub must run in an environment whose NumPy is
< 2. When the project venv has NumPy 2, :func:`ensure_stub_env` makes a small overlay venv that
holds only NumPy 1.26 and sees every other package of the project venv through a ``.pth`` file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path

#: the NumPy the stub environment gets (the one nvidia-pytriton 0.7.0 itself pins)
STUB_NUMPY_REQUIREMENT = "numpy==1.26.4"
#: environment variable naming a Python environment (venv prefix) for the stubs
STUB_ENV_VARIABLE = "MLSHARP_TRITON_PYTHON_ENV"
_OVERLAY_PTH = "zz_mlsharp_overlay.pth"


class TritonNotInstalledError(RuntimeError):
    """The tritonserver binary or one of its parts cannot be found."""


@dataclass(frozen=True)
class TritonInstall:
    """The parts of the ``nvidia-pytriton`` wheel a server launch needs."""

    root: Path  # .../site-packages/pytriton/tritonserver
    server_binary: Path
    python_backend_dir: Path  # libtriton_python.so + triton_python_backend_utils.py
    libs_dir: Path  # .../site-packages/nvidia_pytriton.libs

    def stub_for(self, python_version: str) -> Path:
        """The python-backend stub built for ``X.Y`` (must match the stub environment's Python)."""
        stub = self.root / "python_backend_stubs" / python_version / "triton_python_backend_stub"
        if not stub.is_file():
            raise TritonNotInstalledError(f"no python-backend stub for Python {python_version} at {stub}")
        return stub


def find_triton(site_packages: Path | None = None) -> TritonInstall:
    """Locate the server in the installed ``nvidia-pytriton`` wheel (no import of pytriton itself)."""
    roots = [site_packages] if site_packages else _site_packages_dirs()
    for base in roots:
        root = base / "pytriton" / "tritonserver"
        binary = root / "bin" / "tritonserver"
        if binary.is_file():
            install = TritonInstall(root, binary, root / "backends" / "python", base / "nvidia_pytriton.libs")
            missing = [
                p
                for p in (install.python_backend_dir / "libtriton_python.so", install.libs_dir)
                if not p.exists()
            ]
            if missing:
                raise TritonNotInstalledError(f"incomplete nvidia-pytriton install, missing {missing}")
            return install
    raise TritonNotInstalledError(
        "tritonserver not found: install it with `pip install --no-deps nvidia-pytriton==0.7.0` "
        f"(searched {', '.join(str(r) for r in roots)})"
    )


def _site_packages_dirs() -> list[Path]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return [Path(p) for p in sorted(paths)]


def python_libdir() -> Path:
    """Directory of the running interpreter's shared ``libpython`` (the stub must load this one)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if not libdir:
        raise TritonNotInstalledError("this Python reports no LIBDIR; the stub needs a shared libpython")
    return Path(libdir)


def python_version() -> str:
    """``X.Y`` of the running interpreter."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def env_python_version(env_prefix: Path) -> str:
    """``X.Y`` of the environment's ``python3`` (it must match the stub's libpython)."""
    result = subprocess.run(
        [str(env_prefix / "bin" / "python3"), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.strip()


def env_numpy_version(env_prefix: Path) -> str | None:
    """NumPy version importable by the environment's ``python3`` (None when NumPy is missing)."""
    python = env_prefix / "bin" / "python3"
    result = subprocess.run(
        [str(python), "-c", "import numpy; print(numpy.__version__)"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def numpy_ok_for_stub(version: str | None) -> bool:
    """The 2.51 stub needs NumPy present and older than 2."""
    return version is not None and int(version.split(".")[0]) < 2


def default_overlay_dir() -> Path:
    """Where the NumPy-1 overlay env lives: inside the project venv, so it is ignored and tied to it."""
    return Path(sys.prefix) / "triton-stub-env"


def ensure_stub_env(path: Path | None = None, *, quiet: bool = True) -> Path:
    """Create (once) the overlay env for the stubs: its own NumPy 1.26, everything else from this venv.

    Idempotent: an existing env whose NumPy is < 2 is reused. Needs the package index that pip
    uses for the project (one ~15 MB wheel).
    """
    target = (path or default_overlay_dir()).resolve()
    if (target / "bin" / "python3").exists() and numpy_ok_for_stub(env_numpy_version(target)):
        return target
    venv.EnvBuilder(with_pip=False, clear=True, symlinks=True).create(target)
    site = Path(
        subprocess.run(
            [
                str(target / "bin" / "python3"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    pip = [
        sys.executable,
        "-m",
        "pip",
        "--disable-pip-version-check",
        "--python",
        str(target / "bin" / "python3"),
    ]
    pip += ["install", *(["-q"] if quiet else []), STUB_NUMPY_REQUIREMENT]
    subprocess.run(pip, check=True)
    # .pth lines starting with "import" are executed: addsitedir also processes the project venv's
    # own .pth files (editable installs), and appends after the overlay's site-packages, so the
    # overlay's NumPy wins.
    lines = [f"import site; site.addsitedir({str(p)!r})" for p in _site_packages_dirs()]
    (site / _OVERLAY_PTH).write_text("\n".join(lines) + "\n")
    version = env_numpy_version(target)
    if not numpy_ok_for_stub(version):
        raise TritonNotInstalledError(f"stub env at {target} still imports numpy {version}")
    return target


def resolve_stub_env(explicit: str | os.PathLike[str] | None = None, *, create: bool = True) -> Path:
    """Pick the environment the stubs run in: explicit > $MLSHARP_TRITON_PYTHON_ENV > this venv if its
    NumPy is < 2 > the overlay env (created when ``create``). Raises if the choice has NumPy >= 2."""
    chosen = explicit or os.environ.get(STUB_ENV_VARIABLE)
    if chosen:
        env = Path(chosen).resolve()
        version = env_numpy_version(env)
        if not numpy_ok_for_stub(version):
            raise TritonNotInstalledError(
                f"the stub env {env} has numpy {version}; Triton 2.51's python stub needs numpy < 2 "
                "(it corrupts tensors under NumPy 2). Use `python -m mlsharp.triton.server --setup-stub-env`."
            )
        return env
    here = Path(sys.prefix)
    if numpy_ok_for_stub(env_numpy_version(here)):
        return here
    overlay = default_overlay_dir()
    if not create:
        if (overlay / "bin" / "python3").exists() and numpy_ok_for_stub(env_numpy_version(overlay)):
            return overlay
        raise TritonNotInstalledError(f"no NumPy-1 stub env at {overlay}; create it with ensure_stub_env()")
    return ensure_stub_env(overlay)
