"""Each benchmark runs end to end at a tiny size against the session's test-preset server.

These check that the tools work and report sane values, never how fast anything is.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.load.client import NotLoopbackError, require_loopback, run_load, unique_jpeg
from benchmarks.load.procs import PeakRss
from mlsharp_tools.perf import stats
from mlsharp_tools.perf.inputs import bytes_element, generated_photos
from tests.requires import missing

ROOT = Path(__file__).resolve().parents[2]


def test_bytes_element_has_length_prefix() -> None:
    import base64

    raw = base64.b64decode(bytes_element(b"abc")["b64"])  # type: ignore[arg-type]
    assert raw == b"\x03\x00\x00\x00abc"


def test_stats_delta_counts_only_the_window() -> None:
    def snap(success: int, queue_ns: int, b1: int, b2: int) -> dict[str, Any]:
        inf = {"success": {"count": success}, "queue": {"count": success, "ns": queue_ns}}
        batches = [
            {"batch_size": 1, "compute_infer": {"count": b1}},
            {"batch_size": 2, "compute_infer": {"count": b2}},
        ]
        return {"sharp": {"inference_stats": inf, "execution_count": b1 + b2, "batch_stats": batches}}

    (stage,) = stats.delta(snap(10, 10_000_000, 10, 0), snap(14, 18_000_000, 12, 1))
    assert (stage.requests, stage.executions, stage.batches) == (4, 3, {1: 2, 2: 1})
    assert stage.mean_ms["queue"] == pytest.approx(2.0)


def test_load_refuses_non_loopback() -> None:
    require_loopback("http://127.0.0.1:1")
    with pytest.raises(NotLoopbackError):
        require_loopback("http://192.0.2.1:8080")


def test_load_honours_retry_after_and_counts_429s_apart() -> None:
    """A real loopback server answers 429 (Retry-After: 1) to the first three requests (the three
    workers' first attempts), then 200."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answered: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            answered.append(1)
            first = len(answered) <= 3
            self.send_response(429 if first else 200)
            if first:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    photos = generated_photos(((32, 24, 0),))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = asyncio.run(run_load(url, photos, requests=3, concurrency=3, duration_s=60))
    finally:
        server.shutdown()
        server.server_close()
    assert (result.ok, result.errors, result.rejected, result.throttled) == (3, 0, 0, 3)
    assert result.retry_wait_s == 3.0 and min(result.latencies_s) >= 1.0


def test_unique_jpeg_still_decodes() -> None:
    from mlsharp.imaging import decode_image

    photo = generated_photos(((64, 48, 0),))[0]
    a, b = unique_jpeg(photo, 1), unique_jpeg(photo, 2)
    assert a != b
    assert (decode_image(a).rgb == decode_image(photo).rgb).all()


def test_perf_runs_tiny(triton_server: Any, tmp_path: Path) -> None:
    from mlsharp_tools.perf.tool import PerfAnalyzer, PerfToolError

    try:
        PerfAnalyzer().ensure()
    except (PerfToolError, subprocess.CalledProcessError) as error:
        missing(f"perf_analyzer from tritonclient==2.50.0 cannot be installed/run here: {error}")
    out = tmp_path / "perf"
    cmd = [
        sys.executable, "-m", "benchmarks.perf", "--url", triton_server.http_url, "--grpc-url",
        triton_server.grpc_url, "--models", "mlsharp,sharp", "--protocols", "http,grpc", "--concurrency", "1",
        "--request-count", "2", "--max-trials", "3", "--stability-percentage", "999", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader((out / "perf.csv").open()))
    assert [(r["model"], r["protocol"]) for r in rows] == [
        ("mlsharp", "http"), ("mlsharp", "grpc"), ("sharp", "http"), ("sharp", "grpc")
    ]  # fmt: skip
    for row in rows:
        assert float(row["throughput_infer_s"]) > 0
        assert 0 < float(row["p50_ms"]) <= float(row["p95_ms"]) <= float(row["p99_ms"])
    stages = {(r["model"], r["protocol"], r["stage"]) for r in csv.DictReader((out / "stages.csv").open())}
    assert {("mlsharp", "http", s) for s in ("preprocess", "sharp", "postprocess")} <= stages
    assert "Per-stage breakdown" in (out / "report.md").read_text()


@pytest.fixture()
def gateway(triton_server: Any, tmp_path: Path) -> Iterator[tuple[str, int]]:
    from mlsharp.triton.server import free_port

    port = free_port()
    cmd = [
        sys.executable, "-m", "gateway", "serve", "--backend", "triton",
        "--triton-url", triton_server.grpc_url,
        "--host", "127.0.0.1", "--port", str(port), "--results-dir", str(tmp_path / "results"),
    ]  # fmt: skip
    log = (tmp_path / "gateway.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(120):
            try:
                if httpx.get(f"{url}/v1/ready", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "gateway.log").read_text()[-3000:]
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_load_runs_tiny(gateway: tuple[str, int], triton_server: Any) -> None:
    url, pid = gateway
    photos = generated_photos(((320, 240, 0),))
    peaks = PeakRss({"gateway": [pid], "triton": [triton_server.process.pid]}, interval_s=0.1)

    async def go() -> Any:
        stop = asyncio.Event()
        sampler = asyncio.create_task(peaks.run(stop))
        try:
            return await run_load(url, photos, requests=3, concurrency=2, duration_s=300, warmup=0)
        finally:
            stop.set()
            await sampler

    result = asyncio.run(go())
    assert dict(result.statuses) == {"200": 3}
    assert result.stopped_by == "requests" and result.errors == 0
    assert 0 < result.percentile_ms(50) <= result.percentile_ms(99)
    assert peaks.peaks["gateway"] > 50 * 2**20 and peaks.peaks["triton"] > 100 * 2**20


def test_load_cli_refuses_remote_url(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.load.__main__ import main

    assert main(["--url", "http://192.0.2.1:8080", "--requests", "1"]) == 2
    assert "loopback only" in capsys.readouterr().err


def test_compare_runs_tiny(triton_server: Any, triton_repository: Path, triton_weights: Any) -> None:
    """Alternating eager and Triton on the session's server (the sequential test below starts its own)."""
    cmd = [
        sys.executable, "-m", "benchmarks.compare", "--preset", triton_weights.preset, "--seed",
        str(triton_weights.seed), "--repository", str(triton_repository), "--repeats", "1",
        "--triton-url", triton_server.grpc_url,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ratio = float(proc.stdout.split("ratio triton/eager:")[1].split()[0])
    assert ratio > 0
    diff = float(proc.stdout.split("range:")[1].split()[0])
    assert diff < 0.05, proc.stdout  # same weights and image: the two paths describe the same scene
    assert json.dumps(triton_weights.model_id) and triton_weights.model_id in proc.stdout


def test_triton_request_runs_tiny(triton_server: Any, tmp_path: Path) -> None:
    out = tmp_path / "request.json"
    cmd = [sys.executable, "-m", "benchmarks.triton_request", "--urls",
           f"{triton_server.grpc_url},{triton_server.http_url}", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["scene_bytes"] > 1_000_000  # a 131,072-gaussian PLY (test preset)
    for model in ("preprocess", "sharp", "postprocess"):
        assert report["stages_s"][model]["inference_count"] == 1
    assert 0 < report["network_s"] < report["request_s"]
    assert report["non_network_s"] == pytest.approx(report["request_s"] - report["network_s"])
    assert 0 < report["non_network_share"] < 1
    assert "non-network share of the request" in proc.stdout


def test_gpu_check_dry_run_on_cpu(tmp_path: Path) -> None:
    """The prepared GPU check, the very shell script, runs every section on the CPU at the test
    preset's sizes (GPU_CHECK_DRY_RUN=1: --device cpu --preset test --batches 1,2)."""
    env = {**os.environ, "GPU_CHECK_DRY_RUN": "1", "OUT": str(tmp_path), "PYTHON": sys.executable}
    cmd = ["bash", "benchmarks/gpu_check.sh"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["preset"] == "test" and report["skipped"] == []
    measured = {(f["precision"], f["compile_mode"], f["batch"]) for f in report["forward"]}
    assert measured == {(p, "none", b) for p in ("fp16", "bf16") for b in (1, 2)}
    assert all(f["p50_s"] > 0 and f["finite"] and f["images_per_s"] > 0 for f in report["forward"])
    for row in report["forward"]:  # the runner's fp32 heads keep fp16/bf16 within the export's 2e-2
        assert 0 < max(row["vs_eager_fp32"].values()) < 2e-2, row
    stages = report["stages"]
    assert stages["preprocess_s"] > 0 and stages["spz_compresslevel"] == 1
    sizes = {fmt: stages[f"postprocess_{fmt}_bytes"] for fmt in ("ply", "ply-clean", "splat", "spz", "all")}
    assert sizes["splat"] == 32 * 131_072 and sizes["ply-clean"] > 14 * 4 * 131_072
    assert sizes["all"] == sizes["ply"] + sizes["ply-clean"] + sizes["splat"] + sizes["spz"]
    targets = report["targets"]
    assert targets["b1_network_plus_post_ply_s"] == pytest.approx(
        targets["b1_row"]["p50_s"] + stages["postprocess_ply_s"]
    )
    assert "b4_met" not in targets  # batch 4 was not run
    rows = report["transfers"]["rows"]
    assert {r["memory"] for r in rows} == {"pageable", "pinned"}
    assert all(r["skipped"].startswith("pinned") for r in rows if r["memory"] == "pinned")  # CPU
    for dtype in ("float16", "bfloat16"):
        precision = report["precision"][dtype]
        assert {"Conv2d", "Linear"} <= set(precision["maxima"]) and precision["outputs"]


def test_ort_int8_runs_tiny(triton_export_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8.json"
    onnx_path = triton_export_dir / "onnx" / "model.onnx"
    cmd = [sys.executable, "-m", "benchmarks.ort_int8", "--onnx", str(onnx_path), "--threads", "1",
           "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["working_size_px"] == 512 and result["fp32_s"] > 0 and result["int8_s"] > 0
    assert result["ratio_int8_over_fp32"] == pytest.approx(result["int8_s"] / result["fp32_s"])
    # quantized, yet the same network: every output stays within a few percent of fp32
    assert set(result["max_relative_deviation"]) == {
        "mean_vectors", "singular_values", "quaternions", "colors", "opacities"
    }  # fmt: skip
    assert all(0 <= value < 0.05 for value in result["max_relative_deviation"].values())


def test_cpu_precision_study_runs_tiny(triton_export_dir: Path, triton_weights: Any, tmp_path: Path) -> None:
    out = tmp_path / "study.json"
    cmd = [sys.executable, "-m", "benchmarks.cpu_precision", "--preset", triton_weights.preset,
           "--seed", str(triton_weights.seed), "--onnx", str(triton_export_dir / "onnx" / "model.onnx"),
           "--paths", "ov-fp32,ov-bf16", "--warmup", "0", "--repeats", "1", "--threads", "1",
           "--work", str(tmp_path / "work"), "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    from mlsharp.cpu_features import read_cpu_features

    assert result["environment"]["cpu_model"] == read_cpu_features().model_name
    assert read_cpu_features().model_name in proc.stdout and "| ov-bf16 |" in proc.stdout
    rows = result["paths"]
    assert list(rows) == ["eager-fp32", "ov-fp32", "ov-bf16"]  # the reference always runs first
    assert rows["eager-fp32"]["ratio_to_eager_fp32"] == 1.0
    eager_s = rows["eager-fp32"]["median_forward_s"]
    for row in rows.values():
        assert row["median_forward_s"] > 0 and row["peak_rss_bytes"] > 100 << 20
        assert row["ratio_to_eager_fp32"] == pytest.approx(row["median_forward_s"] / eager_s)
        assert set(row["fidelity"]) == {
            "mean_vectors",
            "singular_values",
            "quaternions",
            "colors",
            "opacities",
        }
    assert all(v == {"max": 0.0, "median": 0.0} for v in rows["eager-fp32"]["fidelity"].values())
    # each path is judged by the export's bound for its precision
    assert {p: r["bound"] for p, r in rows.items()} == {
        "eager-fp32": "fp32",
        "ov-fp32": "fp32",
        "ov-bf16": "bf16",
    }
    ov32 = rows["ov-fp32"]["fidelity"]
    assert rows["ov-fp32"]["within_bound"] and max(f["max"] for f in ov32.values()) < 1e-3
    for field in rows["ov-bf16"]["fidelity"].values():
        assert field["median"] <= field["max"] < 0.1
    # an interrupted study goes on from its --work folder: measured paths are read back, not rerun
    again = subprocess.run(
        [*cmd, "--reuse"], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("reusing ") == 3 and "worker" not in again.stdout
    reused = json.loads(out.read_text())["paths"]
    assert {p: r["forward_s"] for p, r in reused.items()} == {p: r["forward_s"] for p, r in rows.items()}


def test_compare_accepts_every_served_variant_of_the_same_weights() -> None:
    from benchmarks.compare.__main__ import same_weights

    for served in ("w", "w+int8", "w+ov-fp32", "w+ov-bf16"):
        assert same_weights(served, "w"), served
    assert not same_weights("v+ov-bf16", "w") and not same_weights("w+ov-int4", "w")


def test_served_rss_runs_tiny(triton_repository: Path, tmp_path: Path) -> None:
    out = tmp_path / "rss.json"
    cmd = [sys.executable, "-m", "benchmarks.served_rss", "--repository", str(triton_repository),
           "--requests", "2", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    after = result["rss_after_request_bytes"]
    assert len(after) == 2 and len(result["request_s"]) == 2
    assert all(value > 100 << 20 for value in after) and result["peak_rss_bytes"] >= max(after)
    assert result["change_first_to_last"] == pytest.approx((after[1] - after[0]) / after[0])
    models = result["rss_by_process_after_request_bytes"][0]
    assert {"tritonserver", "preprocess", "sharp", "postprocess"} <= set(models)
    assert sum(models.values()) == after[0]
    pss = result["pss_after_request_bytes"]
    assert len(pss) == 2 and all(100 << 20 < value <= rss for value, rss in zip(pss, after, strict=True))
    assert "sharp stub alone" in proc.stdout


def test_compare_sequential_runs_eager_before_triton(
    triton_repository: Path, triton_weights: Any, tmp_path: Path
) -> None:
    out = tmp_path / "compare.json"
    cmd = [
        sys.executable, "-m", "benchmarks.compare", "--preset", triton_weights.preset, "--seed",
        str(triton_weights.seed), "--repository", str(triton_repository), "--repeats", "2",
        "--sequential", "--json", str(out), "--save-scenes", str(tmp_path / "scenes"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    order = [line.split(":")[0] for line in proc.stdout.splitlines() if line.startswith(("warm-up", "run "))]
    assert order == [
        "warm-up eager",
        "run 1 eager",
        "run 2 eager",
        "warm-up triton",
        "run 1 triton",
        "run 2 triton",
    ]
    result = json.loads(out.read_text())
    assert result["order"] == "sequential (eager first)"
    assert result["ratio_triton_over_eager"] == pytest.approx(
        result["median_s"]["triton"] / result["median_s"]["eager"]
    )
    assert result["max_relative_ply_difference"] < 0.05  # same weights, same photo
    eager, served = ((tmp_path / "scenes" / f"{name}.ply").read_bytes() for name in ("eager", "triton"))
    assert eager.startswith(b"ply\n") and served.startswith(b"ply\n") and len(eager) == len(served)


def test_compare_refuses_a_server_url_without_its_repository(capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before exporting or loading anything (minutes at the full preset)."""
    from benchmarks.compare.__main__ import main

    assert main(["--triton-url", "127.0.0.1:1", "--preset", "full"]) == 2
    assert "--triton-url needs --repository" in capsys.readouterr().err
