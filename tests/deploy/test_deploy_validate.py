"""The deployment files validate: runs scripts/validate-deploy.sh, one test per group.

The tools (docker-compose, hadolint, kubernetes-validate, shellcheck, promtool) are installed by
`scripts/validate-deploy.sh --install-only` (CI set-up). If they are missing these tests skip and
say so; they never install anything themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.requires import missing

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "validate-deploy.sh"
TOOLS = Path(os.environ.get("MLSHARP_DEPLOY_TOOLS", ROOT / ".venv" / "deploy-tools"))
TOOLS_PY = TOOLS / "bin" / "python"
GROUPS = ["compose", "dockerfiles", "k8s", "monitoring", "scripts"]
SKIP_REASON = (
    f"deployment validation tools not installed in {TOOLS}: run scripts/validate-deploy.sh --install-only"
)


def run_validation(*groups: str, root: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLSHARP_DEPLOY_TOOLS=str(TOOLS))
    if root is not None:
        env["MLSHARP_DEPLOY_ROOT"] = str(root)
        cmd = [str(TOOLS_PY), str(ROOT / "deploy/tools/check_deploy.py"), "--tools", str(TOOLS), *groups]
    else:
        cmd = ["bash", str(SCRIPT), "--no-install", *groups]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if res.returncode == 3 or (root is not None and not TOOLS_PY.exists()):
        missing(SKIP_REASON)
    return res


@pytest.mark.parametrize("group", GROUPS)
def test_deployment_files_validate(group: str) -> None:
    res = run_validation(group)
    assert res.returncode == 0, res.stdout + res.stderr
    assert " 0 failed" in res.stdout


# ------------------------------------------------------------------ the checks catch real mistakes
# Only what the checks read: the gateway's routers (probe paths), nothing that the compose stage's
# image builds prove (build contexts, COPY sources).
COPIED = [
    "docker-compose.yml", ".env.example", "docker", "deploy", "gateway", "scripts/validate-deploy.sh",
    "scripts/docker-engine.sh", "scripts/docker-bases.sh",
]  # fmt: skip


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    if not TOOLS_PY.exists():
        missing(SKIP_REASON)
    for rel in COPIED:
        src, dst = ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            skip = shutil.ignore_patterns("__pycache__", "*.pt", "*.onnx*", "*.whl")
            shutil.copytree(src, dst, ignore=skip)
        else:
            shutil.copy2(src, dst)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_copy_of_the_tree_validates(tree: Path) -> None:
    res = run_validation("compose", "dockerfiles", "k8s", "monitoring", root=tree)
    assert res.returncode == 0, res.stdout + res.stderr


BREAKAGES = [
    pytest.param(
        "compose",
        ".env.example",
        "REDIS_MAXMEMORY=2gb",
        "",
        "REDIS_MAXMEMORY is used in docker-compose.yml but not documented",
        id="undocumented-knob",
    ),
    pytest.param(
        "compose",
        "docker-compose.yml",
        "./deploy/prometheus/prometheus.yml:",
        "./deploy/prometheus/missing.yml:",
        "bind mount source",
        id="missing-bind-mount",
    ),
    pytest.param(
        "compose",
        "docker-compose.yml",
        "${REDIS_IMAGE:-redis:7.4.1-alpine}",
        "${REDIS_IMAGE:-redis:latest}",
        "tag 'latest'",
        id="unpinned-image",
    ),
    pytest.param(
        "monitoring",
        "deploy/prometheus/rules/mlsharp.yml",
        'nv_inference_pending_request_count{model=~"preprocess|sharp|postprocess"})',
        "nv_inference_pending_request_count)",
        "FAILED",
        id="pending-rule-counts-the-ensemble",
    ),
    pytest.param(
        "compose",
        "docker-compose.yml",
        '- --appendonly\n      - "no"',
        '- --appendonly\n      - "yes"',
        "without AOF persistence",
        id="redis-cache-persisted",
    ),
    pytest.param(
        "compose",
        "docker-compose.yml",
        "condition: service_completed_successfully",
        "condition: service_started",
        "export to complete",
        id="triton-start-order",
    ),
    pytest.param(
        "dockerfiles",
        "docker/gateway.Dockerfile",
        "USER ${APP_UID}",
        "USER root",
        "DL3002 warning: Last USER should not be root",
        id="gateway-root",
    ),
    pytest.param(
        "dockerfiles",
        "docker/gateway.Dockerfile",
        "ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm",
        "ARG PYTHON_IMAGE=python",
        "no tag",
        id="unpinned-base",
    ),
    pytest.param(
        "k8s",
        "deploy/k8s/base/triton.yaml",
        "            medium: Memory\n",
        "",
        "/dev/shm",
        id="shm-not-in-memory",
    ),
    pytest.param(
        "k8s",
        "deploy/k8s/base/triton-hpa.yaml",
        "name: mlsharp_triton_pending_requests",
        "name: some_other_metric",
        "has no prometheus-adapter rule",
        id="hpa-metric-without-adapter-rule",
    ),
    pytest.param(
        "k8s",
        "deploy/k8s/base/triton-hpa.yaml",
        "name: mlsharp_gateway_active_tasks",
        "name: some_external_metric",
        "has no prometheus-adapter external rule",
        id="hpa-external-metric-without-adapter-rule",
    ),
    pytest.param(
        "k8s",
        "deploy/k8s/base/gateway.yaml",
        "containerPort: 8080",
        'containerPort: "8080"',
        "is not of type 'integer'",
        id="schema-violation",
    ),
    pytest.param(
        "k8s",
        "deploy/k8s/base/triton.yaml",
        "      targetPort: grpc",
        "      targetPort: grpcx",
        "targetPort grpcx",
        id="service-port-reference",
    ),
    pytest.param(
        "k8s",
        "deploy/k8s/base/gateway.yaml",
        "value: mlsharp-triton-grpc:8001",
        "value: mlsharp-triton:8001",
        "is not a headless Service",
        id="gateway-triton-through-kube-proxy",
    ),
    pytest.param(
        "k8s",
        "deploy/k8s/base/gateway.yaml",
        "path: /v1/ready",
        "path: /v1/readyz",
        "readinessProbe path /v1/readyz is not a gateway route",
        id="gateway-probe-not-a-route",
    ),
    pytest.param(
        "k8s",
        "deploy/k8s/base/redis-limits.yaml",
        "- noeviction",
        "- allkeys-lru",
        "must be noeviction",
        id="limits-redis-evicts",
    ),
    pytest.param(
        "monitoring",
        "deploy/k8s/monitoring/prometheus-adapter-config.yaml",
        "DCGM_FI_DEV_GPU_UTIL{<<.LabelMatchers>>}[2m]))",
        "DCGM_FI_DEV_GPU_UTIL{<<.LabelMatchers>>}[2m])",
        "FAIL monitoring: every PromQL expression parses",
        id="broken-promql",
    ),
]


@pytest.mark.parametrize(("group", "rel", "old", "new", "message"), BREAKAGES)
def test_validation_catches(tree: Path, group: str, rel: str, old: str, new: str, message: str) -> None:
    edit(tree / rel, old, new)
    res = run_validation(group, root=tree)
    assert res.returncode == 1, res.stdout + res.stderr
    assert message in res.stdout, res.stdout
