"""One request through the `mlsharp` ensemble on a real tritonserver, timed stage by stage.

Starts `tritonserver` on an exported repository, sends one photo over gRPC (raised message limits)
and reads Triton's per-model statistics before and after, so the time of preprocess, sharp and
postprocess (queue vs compute) and the client-side rest (transport, waiting) are known. This is
the issue-3 manual run at full size (`--repository artifacts/full/model_repository`).

    python -m benchmarks.triton_request --repository artifacts/full/model_repository --out result.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from benchmarks.gpu_check import photo_jpeg
from mlsharp.triton.server import TritonServer
from mlsharp_tools.perf.stats import delta, snapshot

MODELS = ("preprocess", "sharp", "postprocess")
GRPC_LIMITS = [("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)]


def run_request(grpc_url: str, image: bytes, fmt: str) -> tuple[float, int]:
    client = grpcclient.InferenceServerClient(grpc_url, channel_args=GRPC_LIMITS)
    inputs = [
        grpcclient.InferInput("image_bytes", [1, 1], "BYTES"),
        grpcclient.InferInput("focal_px", [1, 1], "FP32"),
        grpcclient.InferInput("focal_mm", [1, 1], "FP32"),
        grpcclient.InferInput("formats", [1, 1], "BYTES"),
    ]
    inputs[0].set_data_from_numpy(np.array([[image]], dtype=object))
    inputs[1].set_data_from_numpy(np.zeros((1, 1), np.float32))
    inputs[2].set_data_from_numpy(np.zeros((1, 1), np.float32))
    inputs[3].set_data_from_numpy(np.array([[fmt.encode()]], dtype=object))
    start = time.perf_counter()
    result = client.infer("mlsharp", inputs, client_timeout=3600)
    seconds = time.perf_counter() - start
    return seconds, len(result.as_numpy("scenes")[0][0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--repository", type=Path, help="start tritonserver on this repository")
    where.add_argument("--urls", help="GRPC_HOST:PORT,HTTP_HOST:PORT of a running tritonserver instead")
    parser.add_argument("--format", default="ply")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    image = photo_jpeg()
    with contextlib.ExitStack() as stack:
        if args.urls:
            grpc_url, http_url = args.urls.split(",")
        else:
            server = stack.enter_context(TritonServer(args.repository, startup_timeout_s=600))
            grpc_url, http_url = server.grpc_url, server.http_url
        before = snapshot(http_url)
        request_s, scene_bytes = run_request(grpc_url, image, args.format)
        after = snapshot(http_url)
    # seconds spent per phase in this window (mean per request x requests), per model
    stages = {
        stage.model: {phase: ms * stage.requests / 1e3 for phase, ms in stage.mean_ms.items()}
        | {"inference_count": stage.requests, "execution_count": stage.executions}
        for stage in delta(before, after)
        if stage.model in MODELS
    }
    network_s = stages["sharp"]["compute_infer"]
    report = {
        "what": "one request through the mlsharp ensemble; RANDOM WEIGHTS (timing only)",
        "repository": str(args.repository or args.urls),
        "format": args.format,
        "image_bytes": len(image),
        "scene_bytes": scene_bytes,
        "request_s": request_s,
        "stages_s": stages,
        "network_s": network_s,
        "non_network_s": request_s - network_s,
        "non_network_share": (request_s - network_s) / request_s,
    }
    print(f"request {request_s:.2f} s, scene {scene_bytes / 1e6:.1f} MB")
    for model in MODELS:
        s = stages[model]
        print(f"  {model:12s} queue {s['queue']:8.3f} s  input {s['compute_input']:7.3f} s  "
              f"infer {s['compute_infer']:8.3f} s  output {s['compute_output']:7.3f} s")  # fmt: skip
    print(f"non-network share of the request: {100 * report['non_network_share']:.2f} %")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
