"""Validate the deployment files: the tools run them, this file adds what no tool can say.

Run through scripts/validate-deploy.sh (it installs the tools and runs this file with their Python,
which has PyYAML and kubernetes-validate). Each check prints `ok   <name>: <detail>` or
`FAIL <name>:` with its reasons; the exit code is 1 if any check failed.

The tools: `docker-compose config`, hadolint, `kubectl kustomize` + kubernetes-validate (strict
schemas), promtool (config, rules, rule unit tests, every PromQL expression) and shellcheck. What
the compose stage in CI proves by building and running the stack (build contexts, targets, COPY
sources against each .dockerignore, health checks passing, start-up) is not checked again here.

Checked here because no tool knows the project's contracts:
  compose      .env.example documents every ${VAR} with the same default; images pinned;
               bind-mount sources exist (Grafana never runs in CI); what the CI override resets
               (GPU reservation, Triton 24.10 base, gateway -> triton:8001, cache Redis without
               AOF, export before Triton); Prometheus scrapes compose services.
  dockerfiles  base-image ARG defaults pinned (hadolint cannot resolve `FROM ${X_IMAGE}`).
  k8s          every container pinned, with requests, a memory limit and no privilege; named ports
               and PVCs exist; HPA targets exist and leave replicas to the HPA; the Triton pod's GPU,
               in-memory shm, probes and model PVC; gateway -> headless Triton Service; the limits
               Redis never evicts; every HPA metric has a prometheus-adapter rule; gateway probe
               paths are gateway routes; adapter ConfigMap and Helm values agree.
  monitoring   the dashboard JSON equals its generator's output and has the required panels;
               Grafana provisioning points at the folders compose mounts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

# MLSHARP_DEPLOY_ROOT lets tests validate a modified copy of the files.
ROOT = Path(os.environ.get("MLSHARP_DEPLOY_ROOT") or Path(__file__).resolve().parents[2]).resolve()
sys.path.insert(0, str(Path(__file__).resolve().parent))

import grafana_dashboard  # noqa: E402

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile")) + sorted(
    (ROOT / "docker/ci").glob("*.Dockerfile")
)
K8S_DIRS = ["deploy/k8s/base", "deploy/k8s/overlays/production", "deploy/k8s/overlays/single-gpu"]
K8S_MONITORING = "deploy/k8s/monitoring"
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
TRITON_BASE = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51.0, the server the repository targets
TRITON_PROBES = {"startupProbe": "/v2/health/ready", "readinessProbe": "/v2/health/ready"}
TRITON_PROBES["livenessProbe"] = "/v2/health/live"
REQUIRED_PANELS = [
    "Request rate",
    "Latency p50 / p95",
    "Triton queue time per request",
    "Dynamic batch size (sharp)",
    "GPU utilisation",
    "GPU memory",
    "Cache hit rate",
]


class CheckError(Exception):
    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("; ".join(errors))


def require(errors: list[str], detail: str) -> str:
    if errors:
        raise CheckError(errors)
    return detail


class Tools:
    """The installed tools: the private venv first, then the deb-extracted promtool, then PATH."""

    def __init__(self, tools_dir: Path | None):
        self.dir = tools_dir

    def run(self, name: str, *args: str) -> subprocess.CompletedProcess:
        exe = next(
            (
                str(c)
                for c in ([self.dir / "bin" / name, self.dir / "deb/usr/bin" / name] if self.dir else [])
                if c.is_file()
            ),
            shutil.which(name),
        )
        if not exe:
            raise CheckError([f"{name} not installed (scripts/validate-deploy.sh --install-only)"])
        return subprocess.run([exe, *args], capture_output=True, text=True, cwd=ROOT)

    def ok(self, name: str, *args: str) -> str:
        """Run a tool; its own output is the failure reason."""
        res = self.run(name, *args)
        if res.returncode != 0:
            raise CheckError((res.stdout + res.stderr).strip().splitlines()[:40])
        return res.stdout


def image_pinned(ref: str) -> str | None:
    """None if ref names a pinned tag or digest, else the reason."""
    last = ref.rsplit("/", 1)[-1]
    if "@sha256:" in ref:
        return None
    if ":" not in last:
        return f"{ref}: no tag"
    return f"{ref}: tag 'latest'" if last.rsplit(":", 1)[1] in ("latest", "") else None


# --------------------------------------------------------------------------------------- compose
def compose_config(tools: Tools, env_file: str) -> dict:
    args = ["-f", str(COMPOSE_FILE), "--env-file", env_file, "--profile", "gpu-metrics"]
    return json.loads(tools.ok("docker-compose", *args, "config", "--format", "json"))


def check_compose_parses(tools: Tools) -> str:
    compose_config(tools, os.devnull)
    return f"{len(compose_config(tools, str(ENV_EXAMPLE))['services'])} services (all profiles)"


def check_env_documented(_tools: Tools) -> str:
    """Every ${VAR} of docker-compose.yml is in .env.example, under a comment, with its default."""
    used: dict[str, set[str]] = {}
    for m in re.finditer(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}", COMPOSE_FILE.read_text(encoding="utf-8")):
        used.setdefault(m.group(1), set()).add(m.group(2) or "")
    documented, errors, comment = {}, [], False
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            comment = bool(line.strip())  # a blank line ends the comment's reach
            continue
        key, _, value = line.partition("=")
        documented[key.strip()] = value.strip()
        if not comment:  # a group of consecutive variables shares the comment above it
            errors.append(f".env.example: {key} has no comment above it")
    for var, defaults in sorted(used.items()):
        if var not in documented:
            errors.append(f"{var} is used in docker-compose.yml but not documented in .env.example")
        elif defaults != {documented[var]}:
            errors.append(
                f"{var}: defaults {sorted(defaults)} in compose vs {documented[var]!r} in .env.example"
            )
    errors += [
        f"{v} is in .env.example but docker-compose.yml does not use it" for v in documented.keys() - used
    ]
    return require(errors, f"{len(used)} variables, each documented with its default")


def check_compose_shape(tools: Tools) -> str:
    errors = []
    for env_file in (str(ENV_EXAMPLE), os.devnull):  # pinned with .env.example and with the defaults
        s = compose_config(tools, env_file)["services"]
        errors += [
            f"{n}: image not pinned ({r})" for n, v in s.items() if (r := image_pinned(v.get("image", "")))
        ]
    for name, svc in s.items():
        for vol in svc.get("volumes", []):
            if vol.get("type") == "bind" and not Path(vol["source"]).exists():
                errors.append(f"{name}: bind mount source {vol['source']} missing")
    tr, gw = s["triton"], s["gateway"]
    devices = tr.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    if not any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices):
        errors.append("triton: no NVIDIA GPU reservation")
    if int(tr.get("shm_size", 0)) < 1 << 30:
        errors.append("triton: shm_size below 1 GiB")
    if tr["build"].get("args", {}).get("TRITON_IMAGE") != TRITON_BASE:
        errors.append(f"triton: base image must be {TRITON_BASE} (Triton 2.51.0)")
    if tr.get("depends_on", {}).get("export", {}).get("condition") != "service_completed_successfully":
        errors.append("triton: must wait for export to complete successfully")
    env = gw.get("environment", {})
    if env.get("MLSHARP_TRITON_URL") != "triton:8001" or env.get("MLSHARP_BACKEND") != "triton":
        errors.append("gateway: MLSHARP_BACKEND/MLSHARP_TRITON_URL do not point at triton:8001")
    cmd = s["redis"].get("command", [])
    if "--appendonly" not in cmd or cmd[cmd.index("--appendonly") + 1] != "no":
        errors.append("redis: the cache must run without AOF persistence (--appendonly no)")
    prom = yaml.safe_load(PROM_CONFIG.read_text(encoding="utf-8"))
    targets = [
        t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]
    ]
    errors += [
        f"prometheus scrapes {t}: not a compose service"
        for t in targets
        if t.split(":")[0] not in {*s, "localhost"}
    ]
    errors += [f"prometheus does not scrape {t}" for t in ("gateway:8080", "triton:8002") if t not in targets]
    return require(errors, "pinned images, bind mounts, GPU, shm, Triton 24.10, start order, URLs, scrapes")


# ------------------------------------------------------------------------------------ Dockerfiles
def check_hadolint(tools: Tools) -> str:
    """hadolint covers apt lists, ADD, COPY --from, a root final USER, literal FROM tags."""
    tools.ok("hadolint", "--no-color", "--config", "docker/hadolint.yaml", *[str(d) for d in DOCKERFILES])
    return f"{tools.ok('hadolint', '--version').strip()}: {len(DOCKERFILES)} Dockerfiles, no findings"


def check_base_args(_tools: Tools) -> str:
    """hadolint cannot see through `FROM ${X_IMAGE}`: the ARG defaults must be pinned."""
    errors, seen = [], 0
    for df in DOCKERFILES:
        for arg, ref in re.findall(r"^ARG (\w+_IMAGE)=(\S+)", df.read_text(encoding="utf-8"), re.M):
            seen += 1
            if reason := image_pinned(ref):
                errors.append(f"{df.name}: base image {arg} not pinned ({reason})")
    return require(errors, f"{seen} base-image ARG defaults pinned")


# ------------------------------------------------------------------------------------------- k8s
def render(tools: Tools, folder: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(tools.ok("kubectl", "kustomize", folder)) if d]


def check_k8s_schemas(tools: Tools, folder: str) -> str:
    import kubernetes_validate

    docs, errors = render(tools, folder), []
    for doc, version in ((d, v) for d in docs for v in K8S_VERSIONS):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except Exception as e:  # ValidationError, SchemaNotFoundError, ...
            errors.append(
                f"{doc['kind']}/{doc['metadata']['name']} (k8s {version}): {str(e).splitlines()[0]}"
            )
    return require(errors, f"{len(docs)} objects valid for k8s {'/'.join(K8S_VERSIONS)} (strict)")


def gateway_routes() -> set[str]:
    """The gateway's GET paths, read from its routers (this Python has no FastAPI to import)."""
    routes = set()
    for src in (ROOT / "gateway").rglob("*.py"):
        text = src.read_text(encoding="utf-8")
        prefix = m.group(1) if (m := re.search(r'APIRouter\([^)]*prefix="([^"]*)"', text)) else ""
        routes |= {prefix + p for p in re.findall(r'@\w+\.(?:get|api_route)\(\s*"([^"]*)"', text)}
    return routes


def check_k8s_objects(tools: Tools, folder: str) -> str:
    docs = render(tools, folder)
    objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    kinds = ("Deployment", "StatefulSet", "Job")
    pods = {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in kinds
    }
    port_names = {
        p.get("name") for spec in pods.values() for c in spec["containers"] for p in c.get("ports", [])
    }
    errors, routes = [], gateway_routes()
    for name, spec in pods.items():
        if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
            errors.append(f"{name}: pod securityContext.runAsNonRoot must be true")
        for v in spec.get("volumes", []):
            claim = v.get("persistentVolumeClaim", {}).get("claimName")
            if claim and ("PersistentVolumeClaim", claim) not in objs:
                errors.append(f"{name}: volume {v['name']} uses missing PVC {claim}")
        for c in spec.get("initContainers", []) + spec["containers"]:
            res, sc, where = c.get("resources", {}), c.get("securityContext", {}), f"{name}/{c['name']}"
            if reason := image_pinned(c.get("image", "")):
                errors.append(f"{where}: image not pinned ({reason})")
            if not {"cpu", "memory"} <= set(res.get("requests", {})) or "memory" not in res.get("limits", {}):
                errors.append(f"{where}: needs cpu/memory requests and a memory limit")
            if sc.get("allowPrivilegeEscalation") is not False or "ALL" not in sc.get("capabilities", {}).get(
                "drop", []
            ):
                errors.append(f"{where}: must set allowPrivilegeEscalation: false and drop ALL capabilities")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                path = c.get(probe, {}).get("httpGet", {}).get("path")
                if name == "Deployment/mlsharp-gateway" and path and path not in routes:
                    errors.append(f"{where}: {probe} path {path} is not a gateway route")
    for (kind, name), svc in objs.items():
        if kind == "Service":
            bad = [p["targetPort"] for p in svc["spec"]["ports"] if isinstance(p.get("targetPort"), str)]
            errors += [
                f"Service/{name}: targetPort {p} not a container port" for p in bad if p not in port_names
            ]
        if kind == "HorizontalPodAutoscaler":
            ref = svc["spec"]["scaleTargetRef"]
            if (ref["kind"], ref["name"]) not in objs:
                errors.append(f"HPA/{name}: target {ref['kind']}/{ref['name']} missing")
            elif "replicas" in objs[(ref["kind"], ref["name"])]["spec"]:
                errors.append(f"HPA/{name}: target sets spec.replicas (the HPA owns it)")
    errors += triton_pod(objs) + gateway_targets(objs) + hpa_metrics(objs)
    if not any(kind == "Job" and name.startswith("mlsharp-export") for kind, name in objs):
        errors.append("no export Job (mlsharp-export, or its content-hash name in an overlay)")
    for needed in (
        "PodDisruptionBudget/mlsharp-triton",
        "PodDisruptionBudget/mlsharp-gateway",
    ):
        if tuple(needed.split("/")) not in objs:
            errors.append(f"no {needed}")
    return require(errors, f"{len(docs)} objects: containers, ports, PVCs, HPAs, Triton pod, gateway targets")


def triton_pod(objs: dict[tuple[str, str], dict]) -> list[str]:
    """One GPU, /dev/shm in memory, Triton's own health endpoints, the model repository on a PVC."""
    dep = objs.get(("Deployment", "mlsharp-triton"))
    if not dep:
        return ["no Deployment mlsharp-triton"]
    spec, errors = dep["spec"]["template"]["spec"], []
    tri = next(c for c in spec["containers"] if c["name"] == "triton")
    vols = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: vols.get(m["name"], {}) for m in tri["volumeMounts"]}
    if any(str(tri["resources"].get(k, {}).get("nvidia.com/gpu")) != "1" for k in ("requests", "limits")):
        errors.append("triton: requests and limits must be nvidia.com/gpu: 1")
    shm = mounts.get("/dev/shm", {}).get("emptyDir", {})
    if shm.get("medium") != "Memory" or not shm.get("sizeLimit"):
        errors.append("triton: /dev/shm is not an emptyDir medium Memory with sizeLimit")
    probes = {p: tri.get(p, {}).get("httpGet", {}).get("path") for p in TRITON_PROBES}
    if probes != TRITON_PROBES:
        errors.append(f"triton: probes are {probes}, want {TRITON_PROBES}")
    if "persistentVolumeClaim" not in mounts.get("/models", {}):
        errors.append("triton: /models is not a PVC")
    return errors


def gateway_targets(objs: dict[tuple[str, str], dict]) -> list[str]:
    """The gateway reaches every Triton pod (a headless Service on the gRPC port: per-connection
    balancing through a ClusterIP would feed one pod per gateway) and its limits Redis never evicts."""
    gateway, triton = objs.get(("Deployment", "mlsharp-gateway")), objs.get(("Deployment", "mlsharp-triton"))
    if not gateway or not triton:
        return []
    env = {
        e["name"]: e.get("value", "")
        for e in gateway["spec"]["template"]["spec"]["containers"][0].get("env", [])
    }
    host, _, port = env.get("MLSHARP_TRITON_URL", "").partition(":")
    ports = [p for c in triton["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])]
    grpc = next((p["containerPort"] for p in ports if p.get("name") == "grpc"), None)
    errors = []
    if objs.get(("Service", host), {}).get("spec", {}).get("clusterIP") != "None" or port != str(grpc):
        errors.append(
            f"gateway MLSHARP_TRITON_URL {host}:{port} is not a headless Service on gRPC port {grpc}"
        )
    if url := env.get("MLSHARP_LIMITS_REDIS_URL"):
        name = url.split("//", 1)[-1].split(":", 1)[0].split("/", 1)[0]
        redis = objs.get(("StatefulSet", name), {"spec": {"template": {"spec": {"containers": [{}]}}}})
        args = redis["spec"]["template"]["spec"]["containers"][0].get("args", [])
        policy = args[args.index("--maxmemory-policy") + 1] if "--maxmemory-policy" in args else None
        if policy != "noeviction":
            errors.append(f"limits Redis {name!r}: maxmemory-policy {policy!r}, must be noeviction")
    return errors


def adapter_config() -> dict:
    return yaml.safe_load(
        yaml.safe_load(ADAPTER_CONFIGMAP.read_text(encoding="utf-8"))["data"]["config.yaml"]
    )


def hpa_metrics(objs: dict[tuple[str, str], dict]) -> list[str]:
    """Every Pods/External metric of the Triton HPA is served by a prometheus-adapter rule; the
    gateway scales on CPU."""
    cfg, errors = adapter_config(), []
    served = {"pods": cfg["rules"], "external": cfg.get("externalRules", [])}
    served = {k: {r["name"]["as"] for r in v} for k, v in served.items()}
    for m in objs.get(("HorizontalPodAutoscaler", "mlsharp-triton"), {}).get("spec", {}).get("metrics", []):
        kind = {"Pods": "pods", "External": "external"}.get(m["type"])
        if kind is None:
            errors.append(f"Triton HPA metric type {m['type']} (Pods or External metrics expected)")
        elif m[kind]["metric"]["name"] not in served[kind]:
            where = "external rule" if kind == "external" else "rule"
            errors.append(f"HPA metric {m[kind]['metric']['name']} has no prometheus-adapter {where}")
    gw = objs.get(("HorizontalPodAutoscaler", "mlsharp-gateway"), {}).get("spec", {}).get("metrics", [])
    if not any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in gw):
        errors.append("no CPU HPA for the gateway")
    return errors


def check_adapter_consistency(_tools: Tools) -> str:
    cfg = adapter_config()
    values = yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8"))["rules"]
    same = cfg["rules"] == values["custom"] and cfg.get("externalRules", []) == values.get("external", [])
    return require(
        [] if same else ["ConfigMap rules and Helm values rules differ"], "ConfigMap = Helm values"
    )


# ------------------------------------------------------------------------------------ monitoring
def check_promtool(tools: Tools) -> str:
    rule_tests = sorted(str(t) for t in (PROM_CONFIG.parent / "tests").glob("*.yml"))
    tools.ok("promtool", "check", "config", "--syntax-only", str(PROM_CONFIG))
    tools.ok("promtool", "check", "rules", str(PROM_RULES))
    tools.ok("promtool", "test", "rules", *rule_tests)
    return f"prometheus.yml and recording rules pass promtool; {len(rule_tests)} rule test file(s) pass"


def check_promql(tools: Tools) -> str:
    """Every dashboard and adapter expression, as recording rules for `promtool check rules`."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [
        t["expr"].replace("$__rate_interval", "1m") for p in dash["panels"] for t in p.get("targets", [])
    ]
    cfg = adapter_config()
    for r in cfg["rules"] + cfg.get("externalRules", []):
        q = r["metricsQuery"].replace("<<.GroupBy>>", "namespace,pod")
        exprs += [q.replace("<<.LabelMatchers>>", 'namespace="mlsharp"'), r["seriesQuery"]]
    rules = [{"record": f"check:expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as fh:
        yaml.safe_dump({"groups": [{"name": "syntax", "rules": rules}]}, fh)
        fh.flush()
        tools.ok("promtool", "check", "rules", fh.name)
    return f"{len(exprs)} PromQL expressions (dashboard + adapter rules) parse"


def check_dashboard(_tools: Tools) -> str:
    errors, text = [], DASHBOARD.read_text(encoding="utf-8")
    if text != grafana_dashboard.render():
        errors.append(
            "dashboard JSON differs from its generator: run python deploy/tools/grafana_dashboard.py --write"
        )
    dash = json.loads(text)
    errors += [f"no panel {t!r}" for t in REQUIRED_PANELS if t not in {p["title"] for p in dash["panels"]}]
    ds = yaml.safe_load(GRAFANA_DS.read_text(encoding="utf-8"))["datasources"][0]
    default = next(v for v in dash["templating"]["list"] if v["name"] == "datasource")["current"]["value"]
    if ds["uid"] != default or ds["url"] != "http://prometheus:9090":
        errors.append(
            f"Grafana datasource {ds['uid']} at {ds['url']}: want {default} at http://prometheus:9090"
        )
    folder = yaml.safe_load(GRAFANA_PROVIDERS.read_text(encoding="utf-8"))["providers"][0]["options"]["path"]
    compose = COMPOSE_FILE.read_text(encoding="utf-8")
    for mount in (
        f"./deploy/grafana/dashboards:{folder}:ro",
        "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro",
    ):
        if mount not in compose:
            errors.append(f"compose does not mount {mount}")
    return require(errors, f"{len(dash['panels'])} panels incl. the required ones; provisioning consistent")


def check_shellcheck(tools: Tools) -> str:
    tools.ok("shellcheck", "-x", *SHELL_SCRIPTS)
    return f"{len(SHELL_SCRIPTS)} scripts clean"


GROUPS: dict[str, list[tuple[str, Callable[[Tools], str]]]] = {
    "compose": [
        ("compose: config parses", check_compose_parses),
        ("compose: .env.example documents every knob", check_env_documented),
        ("compose: service shape", check_compose_shape),
    ],
    "dockerfiles": [
        ("dockerfiles: hadolint", check_hadolint),
        ("dockerfiles: base images pinned", check_base_args),
    ],
    "k8s": [
        *[(f"k8s: schemas {d}", lambda t, d=d: check_k8s_schemas(t, d)) for d in [*K8S_DIRS, K8S_MONITORING]],
        *[(f"k8s: objects {d}", lambda t, d=d: check_k8s_objects(t, d)) for d in K8S_DIRS],
        ("k8s: prometheus-adapter rules", check_adapter_consistency),
    ],
    "monitoring": [
        ("monitoring: promtool config + rules", check_promtool),
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
    if unknown := [g for g in wanted if g not in GROUPS]:
        ap.error(f"unknown group(s) {unknown}")
    tools, failed, count = Tools(args.tools), 0, 0
    for name, fn in (check for group in wanted for check in GROUPS[group]):
        count += 1
        try:
            print(f"ok   {name}: {fn(tools)}")
        except CheckError as e:
            failed += 1
            print(f"FAIL {name}:\n" + "\n".join(f"       - {line}" for line in e.errors))
    print(f"validate-deploy: {count - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
