"""The container entry points behave: export staging/idempotency and Triton's start-up flags.

Runs docker/export-entrypoint.sh and docker/triton-start.sh with bash on this machine, with stand-in
`python` and `tritonserver` executables first on PATH (no Docker, no GPU needed).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPORT = ROOT / "docker" / "export-entrypoint.sh"
START = ROOT / "docker" / "triton-start.sh"

# Stand-in for `python`: `-c` snippets of the checkpoint step (path / download) and
# `python -m export ... --out DIR --repository DIR`, which writes a tiny model repository and a
# manifest, logs its argv, and fails when FAKE_EXPORT_FAIL is set.
FAKE_PYTHON = r"""#!/usr/bin/env bash
set -euo pipefail
echo "$*" >> "$FAKE_LOG"
if [ "$1" = "-c" ]; then
  ckpt="$TORCH_HOME/hub/checkpoints/sharp_2572gikvuh.pt"
  case "$2" in
    *download_checkpoint\(*) mkdir -p "$(dirname "$ckpt")"; printf 'weights' > "$ckpt" ;;
    *) echo "$ckpt" ;;
  esac
  exit 0
fi
[ "${FAKE_EXPORT_FAIL:-0}" = "1" ] && { echo "export failed" >&2; exit 7; }
out="" repo=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2" ;;
    --repository) repo="$2" ;;
  esac
  shift
done
mkdir -p "$out"
echo '{"ok": true}' > "$out/export_manifest.json"
for m in preprocess sharp postprocess mlsharp; do
  mkdir -p "$repo/$m/1"
  echo "name: \"$m\"" > "$repo/$m/config.pbtxt"
done
echo "run $(grep -c -- '-m export' "$FAKE_LOG")" > "$repo/sharp/1/model.onnx"
"""

FAKE_TRITON = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$FAKE_LOG"
"""


def write_exe(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_exe(bin_dir / "python", FAKE_PYTHON)
    write_exe(bin_dir / "tritonserver", FAKE_TRITON)
    (tmp_path / "models").mkdir()
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "MLSHARP_MODELS_ROOT": str(tmp_path / "models"),
        "MLSHARP_CHECKPOINT": str(tmp_path / "checkpoints" / "sharp_2572gikvuh.pt"),
        "TORCH_HOME": str(tmp_path / "torch"),
    }


def run(script: Path, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env={**env, **extra}, timeout=60
    )


def test_export_writes_repository_then_marker_and_skips_a_repeat(env: dict[str, str]) -> None:
    models = Path(env["MLSHARP_MODELS_ROOT"])
    first = run(EXPORT, env)
    assert first.returncode == 0, first.stderr
    repo = models / "repository"
    assert sorted(p.name for p in repo.iterdir()) == ["mlsharp", "postprocess", "preprocess", "sharp"]
    marker = json.loads((models / "export-complete.json").read_text())
    assert marker["preset"] == "full" and marker["target"] == "gpu" and marker["precision"] == "fp16"
    assert marker["checkpoint"] == "official-download"
    assert not list(models.glob(".staging-*"))
    assert (models / "export_manifest.json").is_file()
    downloaded = Path(env["TORCH_HOME"]) / "hub/checkpoints/sharp_2572gikvuh.pt"
    assert downloaded.read_text() == "weights"
    calls = [c for c in Path(env["FAKE_LOG"]).read_text().splitlines() if c.startswith("-m export")]
    assert calls[0].startswith(
        "-m export --preset full --target gpu --precision fp16 --formats onnx --gpu-accelerator tensorrt "
        f"--checkpoint {downloaded} --out "
    )

    again = run(EXPORT, env)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert len([c for c in Path(env["FAKE_LOG"]).read_text().splitlines() if c.startswith("-m export")]) == 1

    forced = run(EXPORT, env, MLSHARP_EXPORT_FORCE="1")
    assert forced.returncode == 0, forced.stderr
    assert "using the cached official checkpoint" in forced.stdout
    assert (repo / "sharp/1/model.onnx").read_text().strip() == "run 2"


def test_export_uses_a_mounted_checkpoint_and_changed_settings_redo_it(env: dict[str, str]) -> None:
    assert run(EXPORT, env).returncode == 0
    ckpt = Path(env["MLSHARP_CHECKPOINT"])
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"\0" * 1234)
    res = run(EXPORT, env, MLSHARP_EXPORT_PRECISION="fp32")
    assert res.returncode == 0, res.stderr
    last = Path(env["FAKE_LOG"]).read_text().splitlines()[-1]
    assert f"--checkpoint {ckpt}" in last and "--precision fp32" in last
    marker = json.loads((Path(env["MLSHARP_MODELS_ROOT"]) / "export-complete.json").read_text())
    assert marker["checkpoint"] == "file:sharp_2572gikvuh.pt:1234" and marker["precision"] == "fp32"


def test_failed_export_keeps_the_served_repository(env: dict[str, str]) -> None:
    models = Path(env["MLSHARP_MODELS_ROOT"])
    assert run(EXPORT, env).returncode == 0
    before = (models / "export-complete.json").read_text()
    res = run(EXPORT, env, MLSHARP_EXPORT_FORCE="1", FAKE_EXPORT_FAIL="1")
    assert res.returncode == 7
    assert (models / "export-complete.json").read_text() == before
    assert (models / "repository/sharp/1/model.onnx").read_text().strip() == "run 1"
    assert not list(models.glob(".staging-*"))


def test_triton_refuses_to_start_without_a_finished_export(env: dict[str, str]) -> None:
    models = Path(env["MLSHARP_MODELS_ROOT"])
    res = run(
        START,
        env,
        MLSHARP_MODEL_REPOSITORY=str(models / "repository"),
        MLSHARP_EXPORT_MARKER=str(models / "export-complete.json"),
    )
    assert res.returncode == 1
    assert "run the export first" in res.stderr
    assert not Path(env["FAKE_LOG"]).exists()


def test_triton_start_flags(env: dict[str, str]) -> None:
    models = Path(env["MLSHARP_MODELS_ROOT"])
    assert run(EXPORT, env).returncode == 0
    res = run(
        START,
        env,
        MLSHARP_MODEL_REPOSITORY=str(models / "repository"),
        MLSHARP_EXPORT_MARKER=str(models / "export-complete.json"),
        TRITON_EXTRA_ARGS="--log-info=false --model-control-mode=none",
        TRITON_PYTHON_SHM_DEFAULT_BYTES="33554432",
    )
    assert res.returncode == 0, res.stderr
    args = Path(env["FAKE_LOG"]).read_text().splitlines()
    assert f"--model-repository={models / 'repository'}" in args
    assert {"--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"} <= set(args)
    assert "--backend-config=python,shm-default-byte-size=33554432" in args
    assert "--backend-config=python,shm-growth-byte-size=16777216" in args
    assert args[-2:] == ["--log-info=false", "--model-control-mode=none"]
