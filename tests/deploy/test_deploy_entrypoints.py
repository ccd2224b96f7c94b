"""The container entry points behave: export staging/idempotency and Triton's start-up flags.

Runs docker/export-entrypoint.sh and docker/triton-start.sh with bash on this machine, with stand-in
`python` and `tritonserver` executables first on PATH (no Docker, no GPU needed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

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
    *importlib.metadata*) echo "${FAKE_VERSION:-0.1.0}" ;;
    *contract_digest*) echo "${FAKE_CONTRACT:-c0ffee}" ;;
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
    assert marker["weights"] == "sha256:" + hashlib.sha256(b"weights").hexdigest()
    assert marker["mlsharp"] == "0.1.0" and "mlsharp=0.1.0" in marker["key"]
    assert not list(models.glob(".staging-*"))
    assert (models / "export_manifest.json").is_file()
    downloaded = Path(env["TORCH_HOME"]) / "hub/checkpoints/sharp_2572gikvuh.pt"
    assert downloaded.read_text() == "weights"
    calls = [c for c in Path(env["FAKE_LOG"]).read_text().splitlines() if c.startswith("-m export")]
    assert calls[0].startswith(
        "-m export --preset full --target gpu --precision fp16 --formats onnx --gpu-runtime torch "
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
    assert marker["weights"] == "sha256:" + hashlib.sha256(b"\0" * 1234).hexdigest()
    assert marker["precision"] == "fp32"


def test_an_upgraded_package_or_other_weights_export_again(env: dict[str, str]) -> None:
    """The marker holds the mlsharp version and the weights' sha256: new stage code or a replaced
    checkpoint file of the same size never serves the old repository."""
    assert run(EXPORT, env).returncode == 0
    upgraded = run(EXPORT, env, FAKE_VERSION="0.2.0")
    assert upgraded.returncode == 0 and "nothing to do" not in upgraded.stdout
    assert (Path(env["MLSHARP_MODELS_ROOT"]) / "repository/sharp/1/model.onnx").read_text().strip() == "run 2"
    # same version, other python models or configs (the ensemble's inputs changed once that way)
    new_contract = run(EXPORT, env, FAKE_VERSION="0.2.0", FAKE_CONTRACT="beef")
    assert new_contract.returncode == 0 and "nothing to do" not in new_contract.stdout
    assert run(EXPORT, env, FAKE_VERSION="0.2.0", FAKE_CONTRACT="beef").stdout.count("nothing to do") == 1
    ckpt = Path(env["MLSHARP_CHECKPOINT"])
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"a" * 100)
    assert run(EXPORT, env, FAKE_VERSION="0.2.0", FAKE_CONTRACT="beef").returncode == 0
    ckpt.write_bytes(b"b" * 100)  # same name and size, other weights
    again = run(EXPORT, env, FAKE_VERSION="0.2.0", FAKE_CONTRACT="beef")
    assert again.returncode == 0 and "nothing to do" not in again.stdout


def test_the_repository_may_not_be_the_volume_root(env: dict[str, str]) -> None:
    """The image's environment once set MLSHARP_MODEL_REPOSITORY=/models, the volume root itself:
    the swap then renamed the volume away and the export failed after all its work."""
    models = Path(env["MLSHARP_MODELS_ROOT"])
    for repository in (str(models), str(models) + "/", str(models.parent), "/elsewhere/repository"):
        res = run(EXPORT, env, MLSHARP_MODEL_REPOSITORY=repository)
        assert res.returncode == 2, (repository, res.stdout, res.stderr)
        assert "must be a folder inside the models volume" in res.stderr
    assert not Path(env["FAKE_LOG"]).exists()  # refused before any work
    assert models.is_dir() and not list(models.iterdir())


def test_random_weights_export_needs_no_checkpoint(env: dict[str, str]) -> None:
    res = run(
        EXPORT,
        env,
        MLSHARP_EXPORT_RANDOM_WEIGHTS="1",
        MLSHARP_EXPORT_SEED="3",
        MLSHARP_EXPORT_PRESET="test",
        MLSHARP_EXPORT_TARGET="cpu",
        MLSHARP_EXPORT_PRECISION="fp32",
    )
    assert res.returncode == 0, res.stderr
    calls = [c for c in Path(env["FAKE_LOG"]).read_text().splitlines() if c.startswith("-m export")]
    assert calls[0].startswith(
        "-m export --preset test --target cpu --precision fp32 --formats onnx "
        "--random-weights --seed 3 --out "
    )
    assert "--checkpoint" not in calls[0] and not (Path(env["TORCH_HOME"]) / "hub").exists()
    marker = json.loads((Path(env["MLSHARP_MODELS_ROOT"]) / "export-complete.json").read_text())
    assert marker["weights"] == "random-seed-3"


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


def start_args(env: dict[str, str], **extra: str) -> list[str]:
    """Export, then triton-start.sh on that repository: the flags it hands tritonserver."""
    models = Path(env["MLSHARP_MODELS_ROOT"])
    assert run(EXPORT, env).returncode == 0
    repository = {"MLSHARP_MODEL_REPOSITORY": str(models / "repository")}
    res = run(START, env, **repository, MLSHARP_EXPORT_MARKER=str(models / "export-complete.json"), **extra)
    assert res.returncode == 0, res.stderr
    return Path(env["FAKE_LOG"]).read_text().splitlines()


def test_triton_start_flags(env: dict[str, str]) -> None:
    args = start_args(
        env,
        TRITON_EXTRA_ARGS="--log-info=false --model-control-mode=none",
        TRITON_PYTHON_SHM_DEFAULT_BYTES="33554432",
    )
    assert f"--model-repository={Path(env['MLSHARP_MODELS_ROOT']) / 'repository'}" in args
    assert {"--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"} <= set(args)
    assert {"--http-address=0.0.0.0", "--grpc-address=0.0.0.0", "--metrics-address=0.0.0.0"} <= set(args)
    assert "--backend-config=python,shm-default-byte-size=33554432" in args
    assert "--backend-config=python,shm-growth-byte-size=16777216" in args
    assert args[-2:] == ["--log-info=false", "--model-control-mode=none"]
    assert not any(arg.startswith("--cuda-memory-pool") for arg in args)  # a CPU repository: no server.env


def test_triton_start_takes_the_pools_of_a_gpu_repository_unless_the_environment_sets_them(
    env: dict[str, str],
) -> None:
    models = Path(env["MLSHARP_MODELS_ROOT"])
    assert run(EXPORT, env).returncode == 0
    from mlsharp.triton.gpu_target import server_memory
    from tests.conftest import repository_options

    memory = server_memory(repository_options("gpu"))
    (models / "repository" / "server.env").write_bytes(memory.env_file())
    common = {
        "MLSHARP_MODEL_REPOSITORY": str(models / "repository"),
        "MLSHARP_EXPORT_MARKER": str(models / "export-complete.json"),
    }
    assert run(START, env, **common).returncode == 0
    args = Path(env["FAKE_LOG"]).read_text().splitlines()
    assert f"--pinned-memory-pool-byte-size={memory.pinned_bytes}" in args
    assert f"--cuda-memory-pool-byte-size=0:{memory.cuda_pool_bytes}" in args
    assert f"--backend-config=python,shm-default-byte-size={memory.python_shm_default_bytes}" in args
    assert f"--backend-config=python,shm-growth-byte-size={memory.python_shm_growth_bytes}" in args
    assert run(START, env, **common, TRITON_PINNED_MEMORY_BYTES="0").returncode == 0  # CPU override
    args = Path(env["FAKE_LOG"]).read_text().splitlines()
    assert "--pinned-memory-pool-byte-size=0" in args


def test_triton_start_ports_and_address_for_host_networking(env: dict[str, str]) -> None:
    ports = {"TRITON_HTTP_PORT": "18000", "TRITON_GRPC_PORT": "18001", "TRITON_METRICS_PORT": "18002"}
    args = set(start_args(env, TRITON_BIND_ADDRESS="127.0.0.1", **ports))
    assert {"--http-port=18000", "--grpc-port=18001", "--metrics-port=18002"} <= args
    assert {"--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1"} <= args


def _init_wait_command(models: Path) -> str:
    """The Triton pod's wait-for-export command as kustomize renders it, on a local folder."""
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deploy/k8s/base")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for doc in yaml.safe_load_all(rendered):
        if doc and doc["kind"] == "Deployment" and doc["metadata"]["name"] == "mlsharp-triton":
            (init,) = doc["spec"]["template"]["spec"]["initContainers"]
            return init["command"][-1].replace("/models", str(models))
    raise AssertionError("no mlsharp-triton Deployment rendered")


def test_the_init_container_gives_up_with_a_message(env: dict[str, str]) -> None:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is needed to render deploy/k8s (kubectl kustomize)")
    models = Path(env["MLSHARP_MODELS_ROOT"])
    command = _init_wait_command(models)
    zero_wait = {**env, "MLSHARP_EXPORT_WAIT_S": "0"}

    def wait() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=60, env=zero_wait
        )

    waited = wait()
    assert waited.returncode == 1 and "no finished export" in waited.stderr
    assert run(EXPORT, env).returncode == 0
    ready = wait()
    assert ready.returncode == 0 and '"key": ' in ready.stdout
