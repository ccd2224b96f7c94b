"""Generate deploy/grafana/dashboards/mlsharp.json (the MLSharp Grafana dashboard).

The JSON is generated so that panels stay consistent; the committed file must equal the output
(scripts/validate-deploy.sh checks it). Regenerate after editing this file:

    python deploy/tools/grafana_dashboard.py --write

Metric sources: the gateway's /metrics (names agreed in docs/interfaces.md / issue 4:
http_requests_total, http_request_duration_seconds, predict_duration_seconds, cache_hits_total,
cache_misses_total), Triton's metrics port 8002 (nv_inference_*, nv_gpu_*), and optionally the
NVIDIA DCGM exporter (DCGM_FI_DEV_*), which is a separate process from Triton.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "grafana" / "dashboards" / "mlsharp.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"


def quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket[{RI}])))"


def rate(metric: str, selector: str = "") -> str:
    return f"sum(rate({metric}{selector}[{RI}]))"


ENSEMBLE = '{model="mlsharp"}'

# (title, unit, [(legend, expr)], grid position w, description)
PANELS: list[tuple[str, str, list[tuple[str, str]], str]] = [
    (
        "Request rate",
        "reqps",
        [
            ("all HTTP requests", rate("http_requests_total")),
            ("predictions", rate("predict_requests_total")),
            ("Triton ensemble successes", rate("nv_inference_request_success", ENSEMBLE)),
            ("Triton ensemble failures", rate("nv_inference_request_failure", ENSEMBLE)),
        ],
        "Gateway HTTP requests per second, predictions, and what reaches Triton's ensemble.",
    ),
    (
        "Latency p50 / p95",
        "s",
        [
            ("HTTP p50", quantile(0.5, "http_request_duration_seconds")),
            ("HTTP p95", quantile(0.95, "http_request_duration_seconds")),
            ("predict p50", quantile(0.5, "predict_duration_seconds")),
            ("predict p95", quantile(0.95, "predict_duration_seconds")),
        ],
        "Quantiles from the gateway's histograms (end-to-end, as the client sees it).",
    ),
    (
        "Triton queue time per request",
        "µs",
        [
            (
                "{{model}}",
                f"sum by (model) (rate(nv_inference_queue_duration_us[{RI}]))"
                f" / clamp_min(sum by (model) (rate(nv_inference_request_success[{RI}])), 1e-9)",
            ),
        ],
        "Average wait in Triton's scheduler queue per model; the Triton HPA scales on the `sharp` series.",
    ),
    (
        "Triton compute time per request",
        "µs",
        [
            (
                "{{model}}",
                f"sum by (model) (rate(nv_inference_compute_infer_duration_us[{RI}]))"
                f" / clamp_min(sum by (model) (rate(nv_inference_request_success[{RI}])), 1e-9)",
            ),
        ],
        "Average model execution time per request, by model (preprocess, sharp, postprocess).",
    ),
    (
        "Dynamic batch size (sharp)",
        "none",
        [
            (
                "inferences per execution",
                f'sum(rate(nv_inference_count{{model="sharp"}}[{RI}]))'
                f' / clamp_min(sum(rate(nv_inference_exec_count{{model="sharp"}}[{RI}])), 1e-9)',
            ),
            ("pending requests", 'sum(nv_inference_pending_request_count{model="sharp"})'),
        ],
        "Average batch the dynamic batcher actually formed for the network, and requests waiting.",
    ),
    (
        "GPU utilisation",
        "percent",
        [
            ("Triton {{gpu_uuid}}", "100 * avg by (gpu_uuid) (nv_gpu_utilization)"),
            ("DCGM GPU {{gpu}}", "avg by (gpu) (DCGM_FI_DEV_GPU_UTIL)"),
        ],
        "Triton's own GPU metric (0-1, shown in %) and the DCGM exporter's, when it is deployed.",
    ),
    (
        "GPU memory",
        "bytes",
        [
            ("used {{gpu_uuid}}", "sum by (gpu_uuid) (nv_gpu_memory_used_bytes)"),
            ("total {{gpu_uuid}}", "sum by (gpu_uuid) (nv_gpu_memory_total_bytes)"),
            ("DCGM used GPU {{gpu}}", "sum by (gpu) (DCGM_FI_DEV_FB_USED) * 1048576"),
        ],
        "Device memory used and available (DCGM reports MiB; converted to bytes).",
    ),
    (
        "Cache hit rate",
        "percentunit",
        [
            (
                "hit rate",
                f"{rate('cache_hits_total')}"
                f" / clamp_min({rate('cache_hits_total')} + {rate('cache_misses_total')}, 1e-9)",
            ),
        ],
        "Share of predictions answered from the result cache (in-process LRU or Redis).",
    ),
]


def panel(i: int, title: str, unit: str, targets: list[tuple[str, str]], description: str) -> dict:
    return {
        "id": i + 1,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + k), "datasource": DS, "expr": expr, "legendFormat": legend}
            for k, (legend, expr) in enumerate(targets)
        ],
    }


def dashboard() -> dict:
    return {
        "uid": "mlsharp-overview",
        "title": "MLSharp",
        "description": "MLSharp serving: gateway, Triton, GPU and cache"
        " (generated by deploy/tools/grafana_dashboard.py)",
        "tags": ["mlsharp", "triton"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "Prometheus", "value": "mlsharp-prometheus"},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"write {OUT}")
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    args = ap.parse_args(argv)
    text = render()
    if args.write:
        OUT.write_text(text, encoding="utf-8")
        print(f"wrote {OUT}")
    elif args.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is stale: run python deploy/tools/grafana_dashboard.py --write", file=sys.stderr)
            return 1
        print(f"{OUT.name}: up to date ({len(PANELS)} panels)")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
