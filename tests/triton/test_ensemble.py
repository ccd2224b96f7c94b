"""The ``mlsharp`` ensemble on a real tritonserver (test preset, random weights, CPU target).

Uses the suite's shared ``triton_server`` (tests/conftest.py: one export, one server).
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlsharp.sample_image import photo_like_jpeg
from tests.requires import require_triton
from tests.triton import support

pytestmark = [pytest.mark.triton, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(triton_server):
    require_triton()
    return triton_server


@pytest.fixture(scope="module")
def client(server):
    return support.grpc_client(server.grpc_url)


@pytest.fixture(scope="module")
def photo() -> bytes:
    return photo_like_jpeg(seed=3)


def _decode(data: bytes):
    from mlsharp.imaging import decode_image

    return decode_image(data)


def _jpeg(width: int, height: int, seed: int) -> bytes:
    from mlsharp.sample_image import photo_like_rgb

    buffer = io.BytesIO()
    Image.fromarray(photo_like_rgb(width, height, seed)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_served_files_equal_the_eager_pipeline_byte_for_byte_on_the_same_network(
    client, photo: bytes, triton_repository: Path, triton_weights
) -> None:
    """Pre/post-processing add nothing: with the exported graph as the network, the pure
    pipeline (decode -> to_network_input -> network -> unproject -> encode) gives the same bytes."""
    network = support.OrtNetwork(triton_repository / "sharp" / "1" / "model.onnx")
    reference = support.pipeline(triton_weights.preset, triton_weights.seed, network)
    expected = reference.predict(_decode(photo), ("ply", "ply-clean", "spz", "splat"))
    for fmt, data in expected.encoded.items():
        scenes, metadata = support.infer_grpc(client, [photo], fmt)
        assert scenes[0] == data, f"{fmt}: served bytes differ from the eager pipeline"
        assert json.loads(metadata[0]) == expected.metadata


def test_served_ply_matches_eager_pytorch_within_the_export_tolerance(
    client, photo: bytes, triton_weights
) -> None:
    """Against eager PyTorch the only difference is ONNX Runtime's float32 order (export check:
    raw outputs within 1e-3 of their range). Unprojection is linear in the means and quadratic in
    the scales, so: xyz within 1e-3 of max|xyz|, covariances within 2e-3 of max|cov|, colours and
    opacities (bounded in [0, 1]) within 1e-3; camera metadata elements exactly equal."""
    eager = support.pipeline(triton_weights.preset, triton_weights.seed).predict(_decode(photo), ("ply",))
    support.assert_ply_matches_eager(support.infer_grpc(client, [photo], "ply")[0][0], eager.encoded["ply"])


def test_every_format_round_trips(client, photo: bytes) -> None:
    from mlsharp.formats.splat import decode_splat
    from mlsharp.formats.spz import decode_spz

    n = 131_072
    ply = support.read_ply(support.infer_grpc(client, [photo], "ply")[0][0])
    xyz = np.stack([ply["vertex"].data[c] for c in "xyz"], 1)
    assert len(xyz) == n and np.isfinite(xyz).all()
    assert {e.name for e in ply.elements} >= {"vertex", "intrinsic", "image_size"}
    clean = support.read_ply(support.infer_grpc(client, [photo], "ply-clean")[0][0])
    assert [e.name for e in clean.elements] == ["vertex"] and len(clean["vertex"].data) == n
    np.testing.assert_array_equal(np.stack([clean["vertex"].data[c] for c in "xyz"], 1), xyz)
    spz = decode_spz(support.infer_grpc(client, [photo], "spz")[0][0])
    assert spz.means.shape == (n, 3)
    # 24-bit fixed point with 12 fractional bits: positions within half a step (where in range)
    in_range = np.abs(xyz).max(axis=1) < (1 << 23) / (1 << spz.fractional_bits)
    assert np.abs(spz.means[in_range] - xyz[in_range]).max() <= 0.5 / (1 << spz.fractional_bits) + 1e-6
    splat = decode_splat(support.infer_grpc(client, [photo], "splat")[0][0])
    assert splat.means.shape == (n, 3) and np.isfinite(splat.means).all()


def test_corrupt_image_fails_alone_among_concurrent_requests(client) -> None:
    """Six concurrent requests of distinct sizes; #2 is a truncated JPEG. Each success must carry
    its own image's size (the batched network call split results back to the right request)."""
    from mlsharp.triton.backend import parse_error_text

    images = [_jpeg(320 + 16 * i, 240, seed=i) for i in range(6)]
    images[2] = images[2][: len(images[2]) // 3]
    results: dict[int, object] = {}

    def call(index: int) -> None:
        try:
            results[index] = support.infer_grpc(client, [images[index]], "splat")
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    error = results[2]
    assert isinstance(error, Exception), "the truncated image must fail"
    code, message = parse_error_text(error.message())
    assert code == "invalid_image" and message, error.message()
    for index in (0, 1, 3, 4, 5):
        scenes, metadata = results[index]
        assert json.loads(metadata[0])["intrinsics"]["cx_px"] * 2 == 320 + 16 * index
        assert len(scenes[0]) == 131_072 * 32


def test_a_request_may_carry_a_batch_of_images(client) -> None:
    images = [_jpeg(200, 150, seed=7), _jpeg(150, 200, seed=8)]
    scenes, metadata = support.infer_grpc(client, images, "ply-clean")
    assert len(scenes) == len(metadata) == 2
    widths = [json.loads(m)["intrinsics"]["cx_px"] * 2 for m in metadata]
    assert widths == [200, 150]


def test_dynamic_batching_batches_concurrent_clients(client, server) -> None:
    """>= 4 concurrent clients: `sharp` executes fewer times than it infers (real batches)."""

    def counts() -> tuple[int, int]:
        stats = client.get_inference_statistics("sharp", as_json=True)["model_stats"][0]
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))

    before = counts()
    image = _jpeg(256, 192, seed=11)
    errors: list[BaseException] = []

    def worker() -> None:
        own = support.grpc_client(server.grpc_url)
        try:
            for _ in range(3):
                support.infer_grpc(own, [image], "spz")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    after = counts()
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == 18
    assert executions < inferences, f"no batching: {executions} executions for {inferences} inferences"
