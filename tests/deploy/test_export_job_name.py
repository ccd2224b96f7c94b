"""The export Job's name follows its content in every overlay (deploy/tools/export_job_name.py):
an image bump gives a new name, the same content the same name, and CI catches a stale name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "deploy" / "tools" / "export_job_name.py"
OVERLAYS = sorted(p for p in (ROOT / "deploy" / "k8s" / "overlays").iterdir() if p.is_dir())


@pytest.fixture(autouse=True)
def _kubectl() -> None:
    if shutil.which("kubectl") is None:
        message = "kubectl is required (kustomize rendering)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # a missing real component is a failure in CI, never a skip
        pytest.skip(message)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True)


def test_every_overlay_names_its_export_job_by_content() -> None:
    result = run(*OVERLAYS)
    assert result.returncode == 0, result.stderr


def test_an_image_bump_needs_and_gets_a_new_name(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "deploy" / "k8s", tmp_path / "k8s")
    overlay = tmp_path / "k8s" / "overlays" / "production"
    before = (overlay / "export-job-name.yaml").read_text()
    kustomization = overlay / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("newTag: 0.1.0", "newTag: 0.1.1"))
    stale = run(overlay)
    assert stale.returncode == 1 and "--write" in stale.stderr  # says how to fix it
    assert run("--write", overlay).returncode == 0
    after = (overlay / "export-job-name.yaml").read_text()
    assert after != before and "mlsharp-export-" in after
    assert run(overlay).returncode == 0
    assert run("--write", overlay).stdout == ""  # same content, same name: nothing to do
