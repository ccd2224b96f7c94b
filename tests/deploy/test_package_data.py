"""The installed package carries every file it reads at run time, not only the source tree does.

The images install the project with pip; before, neither the python models' templates (read by
the exporter) nor the web page (read by the gateway) were package data, so the export service
failed after its whole run and `/` failed in the gateway container. Built here as a wheel and
installed into a bare folder, away from the source tree.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from export.repository import TEMPLATES
from gateway.api.web import PAGE_FILES, STATIC_DIR

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
    ]
    result = subprocess.run([*command, str(ROOT)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (found,) = out.glob("mlsharp-*.whl")
    return found


def test_the_wheel_holds_the_model_templates_and_the_page(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {
        f"mlsharp/triton/model_repository/{m}/1/model.py" for m in ("preprocess", "sharp", "postprocess")
    }
    assert templates <= names
    assert {f"gateway/static/{name}" for name in [*PAGE_FILES, "index.html"]} <= names


def test_an_installed_copy_writes_a_repository_and_finds_the_page(wheel: Path, tmp_path: Path) -> None:
    """The exporter's template folder and the gateway's static folder resolve inside the installed
    package (site-packages), with every file present."""
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from export.repository import TEMPLATES; from gateway.api.web import STATIC_DIR;"
        "print(TEMPLATES); print(STATIC_DIR)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(target)], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    templates, static = (Path(line) for line in out.stdout.split())
    assert templates.is_relative_to(target) and static.is_relative_to(target)
    for name in ("preprocess", "sharp", "postprocess"):
        assert (templates / name / "1" / "model.py").read_bytes() == (
            TEMPLATES / name / "1" / "model.py"
        ).read_bytes()
    assert (static / "index.html").read_bytes() == (STATIC_DIR / "index.html").read_bytes()


def test_the_contract_digest_follows_the_python_models(tmp_path: Path) -> None:
    """The export marker's contract digest changes with a python model (and is stable otherwise)."""
    import shutil

    from export.repository import contract_digest

    copy = tmp_path / "model_repository"
    shutil.copytree(TEMPLATES, copy)
    assert contract_digest(copy) == contract_digest(TEMPLATES) == contract_digest()
    (copy / "postprocess" / "1" / "model.py").write_text("# another postprocess\n")
    assert contract_digest(copy) != contract_digest(TEMPLATES)
