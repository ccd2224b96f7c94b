"""The ``mlsharp`` ensemble on the suite's shared tritonserver (tests/conftest.py: test preset,
random weights, CPU target): every served format decodes to the same scene, equals the eager
pipeline, carries the documented metadata, and requests batch and fail independently.

Why the served PLY is the reference for the other formats: requests sent one after another run
``sharp`` at batch 1, and ONNX Runtime on CPU is deterministic, so every format encodes the very
same raw outputs. The tolerances are then the formats' own quantisation steps, half a step each,
plus float32 rounding of the PLY's transforms (logit, log, SH DC). Against eager PyTorch the only
difference is ONNX Runtime's float32 order (the export check's 1e-3).
"""

from __future__ import annotations

import io
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlsharp.formats import OUTPUT_FORMATS
from mlsharp.formats.attributes import SH_C0
from mlsharp.formats.ply import PLY_LAYOUT_VERSION, RANDOM_WEIGHTS_COMMENT
from mlsharp.imaging import decode_image
from mlsharp.sample_image import photo_like_jpeg, photo_like_rgb
from tests.requires import require_triton
from tests.triton import support

pytestmark = [pytest.mark.triton, pytest.mark.slow]

WIDTH, HEIGHT = 400, 300
GAUSSIANS = 131_072  # test preset: 2 layers x 256 x 256
ELEMENTS = ["vertex", "extrinsic", "intrinsic", "image_size", "frame", "disparity", "color_space", "version"]


@pytest.fixture(scope="module")
def client(triton_server):
    require_triton()
    return support.grpc_client(triton_server.grpc_url)


@pytest.fixture(scope="module")
def photo() -> bytes:
    return photo_like_jpeg(WIDTH, HEIGHT, seed=6)  # EXIF: 26 mm (35 mm equivalent)


@pytest.fixture(scope="module")
def served(client, photo: bytes) -> dict[str, tuple[bytes, dict]]:
    """Each format for the same photo, requested one after another."""
    result = {}
    for fmt in OUTPUT_FORMATS:
        scenes, metadata = support.infer_grpc(client, [photo], fmt)
        result[fmt] = (scenes[0], json.loads(metadata[0]))
    return result


@pytest.fixture(scope="module")
def eager(photo: bytes, triton_weights):
    """The pure-PyTorch pipeline's PLY for the photo, with the served random weights."""
    return support.pipeline(triton_weights.preset, triton_weights.seed).predict(decode_image(photo), ("ply",))


@pytest.fixture(scope="module")
def ply(served) -> dict[str, np.ndarray]:
    """The served PLY's vertex attributes, float64."""
    vertex = support.read_ply(served["ply"][0])["vertex"].data
    column = lambda *names: np.stack([vertex[n] for n in names], axis=1).astype(np.float64)  # noqa: E731
    return {
        "xyz": column("x", "y", "z"),
        "f_dc": column("f_dc_0", "f_dc_1", "f_dc_2"),
        "alpha": 1.0 / (1.0 + np.exp(-vertex["opacity"].astype(np.float64))),
        "log_scale": column("scale_0", "scale_1", "scale_2"),
        "log_scale_f32": np.stack([vertex[f"scale_{i}"] for i in range(3)], axis=1),
        "quat": column("rot_0", "rot_1", "rot_2", "rot_3"),
        "xyz_f32": np.stack([vertex[c] for c in "xyz"], axis=1),
    }


def _unit(q: np.ndarray) -> np.ndarray:
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_metadata_json_has_the_documented_fields(served, photo: bytes, triton_weights) -> None:
    decoded = decode_image(photo)
    documents = [meta for _, meta in served.values()]
    assert all(meta == documents[0] for meta in documents)  # the same scene whatever the format
    meta = documents[0]
    assert meta["model_id"] == triton_weights.model_id and meta["random_weights"] is True
    assert meta["num_gaussians"] == GAUSSIANS and meta["working_size_px"] == 512
    assert meta["image_size"] == {"width_px": WIDTH, "height_px": HEIGHT}
    f = decoded.focal_px
    assert meta["intrinsics"] == {
        "focal_px": f,
        "cx_px": WIDTH / 2,
        "cy_px": HEIGHT / 2,
        "matrix": [[f, 0.0, WIDTH / 2], [0.0, f, HEIGHT / 2], [0.0, 0.0, 1.0]],
    }
    assert meta["vertical_fov_deg"] == pytest.approx(math.degrees(2 * math.atan(HEIGHT / (2 * f))))
    assert (meta["focal_source"], meta["source_format"]) == (decoded.focal_source, decoded.source_format)
    assert meta["metadata_version"] == 1 and meta["ply_layout_version"] == list(PLY_LAYOUT_VERSION)
    assert meta["color_space"] == "srgb" and meta["coordinate_frame"].startswith("opencv")
    q10, q90 = meta["disparity_quantiles"]["q10"], meta["disparity_quantiles"]["q90"]
    assert 0 < q10 < q90


def test_ply_carries_camera_elements_and_the_random_weights_stamp(served, ply) -> None:
    data = support.read_ply(served["ply"][0])
    meta = served["ply"][1]
    assert [e.name for e in data.elements] == ELEMENTS
    assert RANDOM_WEIGHTS_COMMENT in data.comments
    assert len(ply["xyz"]) == GAUSSIANS and np.isfinite(ply["xyz"]).all()
    f = meta["intrinsics"]["focal_px"]
    intrinsic = data["intrinsic"].data["intrinsic"]
    np.testing.assert_array_equal(intrinsic, np.float32([f, 0, WIDTH / 2, 0, f, HEIGHT / 2, 0, 0, 1]))
    assert data["image_size"].data["image_size"].tolist() == [WIDTH, HEIGHT]
    assert data["frame"].data["frame"].tolist() == [1, GAUSSIANS]
    quantiles = meta["disparity_quantiles"]
    np.testing.assert_array_equal(
        data["disparity"].data["disparity"], np.float32([quantiles["q10"], quantiles["q90"]])
    )
    assert data["version"].data["version"].tolist() == list(PLY_LAYOUT_VERSION)


def test_ply_clean_is_the_same_vertex_block_alone(served) -> None:
    full, clean = (support.read_ply(served[fmt][0]) for fmt in ("ply", "ply-clean"))
    assert [e.name for e in clean.elements] == ["vertex"]
    assert RANDOM_WEIGHTS_COMMENT in clean.comments
    assert clean["vertex"].data.tobytes() == full["vertex"].data.tobytes()


def test_spz_decodes_to_the_ply_scene_within_its_quantisation(served, ply) -> None:
    from mlsharp.formats.spz import decode_spz

    spz = decode_spz(served["spz"][0])
    assert (spz.version, spz.fractional_bits, spz.flags) == (3, 12, 0)
    assert spz.means.shape == (GAUSSIANS, 3)
    step = 1.0 / (1 << spz.fractional_bits)
    assert np.abs(ply["xyz"]).max() < 2048  # inside SPZ's 24-bit range, so no clamping below
    assert np.abs(spz.means - ply["xyz"]).max() <= 0.5 * step + 1e-9
    assert np.abs(spz.opacities - ply["alpha"]).max() <= 0.5 / 255 + 1e-6
    assert np.abs(spz.sh_dc - ply["f_dc"]).max() <= 0.5 / (255 * 0.15) + 1e-5
    log_scale = np.clip(ply["log_scale"], -10.0, 255 / 16 - 10.0)  # u8 (ln s + 10) * 16
    assert np.abs(spz.log_scales - log_scale).max() <= 0.5 / 16 + 1e-5
    # smallest-three, 9 bits: each component within half a step of sqrt(1/2)/511, sign-free
    dots = np.abs(np.sum(_unit(spz.quaternions.astype(np.float64)) * _unit(ply["quat"]), axis=1))
    assert dots.min() >= 1 - 1e-5


def test_splat_decodes_to_the_ply_scene_in_volume_order(served, ply) -> None:
    from mlsharp.formats.splat import decode_splat

    splat = decode_splat(served["splat"][0])
    assert splat.means.shape == (GAUSSIANS, 3)
    # positions are the same float32 values in both files: match rows exactly through them
    ply_order = np.lexsort(ply["xyz_f32"].T[::-1])
    splat_order = np.lexsort(splat.means.T[::-1])
    np.testing.assert_array_equal(splat.means[splat_order], ply["xyz_f32"][ply_order])
    assert (np.diff(ply["xyz_f32"][ply_order], axis=0) != 0).any(axis=1).all()  # positions are unique
    rows = np.empty(GAUSSIANS, dtype=np.int64)
    rows[splat_order] = ply_order  # splat row i is PLY row rows[i]
    np.testing.assert_allclose(splat.scales, np.exp(ply["log_scale_f32"][rows]), rtol=1e-6)
    srgb = ply["f_dc"][rows] * SH_C0 + 0.5
    assert np.abs(splat.colors_srgb - np.clip(srgb, 0, 1)).max() <= 0.5 / 255 + 1e-5
    assert np.abs(splat.opacities - ply["alpha"][rows]).max() <= 0.5 / 255 + 1e-6
    dots = np.sum(splat.quaternions.astype(np.float64) * _unit(ply["quat"][rows]), axis=1)
    assert dots.min() >= 0.999  # 8 bits per component (q * 128 + 128), same sign convention
    key = np.exp(ply["log_scale"][rows]).prod(axis=1) * ply["alpha"][rows]
    assert (key[:-1] >= key[1:] * (1 - 1e-5)).all()  # largest volume x opacity first


def test_focal_overrides_reach_camera_and_metadata(client, photo: bytes) -> None:
    for override in ({"focal_px": 500.0}, {"focal_mm": 50.0}):
        expected = decode_image(photo, **override)
        scenes, metadata = support.infer_grpc(client, [photo], "ply", **override)
        meta = json.loads(metadata[0])
        assert meta["intrinsics"]["focal_px"] == expected.focal_px, override
        assert meta["focal_source"] == expected.focal_source != decode_image(photo).focal_source
        intrinsic = support.read_ply(scenes[0])["intrinsic"].data["intrinsic"]
        assert intrinsic[0] == np.float32(expected.focal_px)


def test_ply_header_and_metadata_equal_eager_pytorch(served, eager) -> None:
    """Against the pure-PyTorch pipeline (same random weights): the PLY header and every metadata
    field are equal, except the disparity quantiles, which are float32 order statistics of 1/z and
    move with ONNX Runtime's float32 rounding (measured 1.6e-5 relative; allowed: the export check's 1e-3)."""
    scene, meta = served["ply"]
    header_end = b"end_header\n"
    assert scene[: scene.index(header_end)] == eager.encoded["ply"][: eager.encoded["ply"].index(header_end)]
    assert len(scene) == len(eager.encoded["ply"])
    expected = json.loads(json.dumps(eager.metadata))
    quantiles, expected_quantiles = meta["disparity_quantiles"], expected["disparity_quantiles"]
    assert {k: v for k, v in meta.items() if k != "disparity_quantiles"} == {
        k: v for k, v in expected.items() if k != "disparity_quantiles"
    }
    for key in ("q10", "q90"):
        assert quantiles[key] == pytest.approx(expected_quantiles[key], rel=1e-3)


def _infer_formats(client, photo: bytes, formats: list[bytes]):
    import tritonclient.grpc as grpcclient

    inputs = support.ensemble_inputs(grpcclient, [photo], "ply")[:3]
    tensor = grpcclient.InferInput("formats", [1, len(formats)], "BYTES")
    tensor.set_data_from_numpy(np.array([formats], dtype=np.object_))
    return client.infer("mlsharp", [*inputs, tensor], client_timeout=600)


def test_one_request_returns_every_format_from_one_network_run(client, served, photo) -> None:
    """``formats`` = all four: one scene per format, in order, each byte-identical to the scene
    the single-format request returned; one ``sharp`` inference for the four."""

    def sharp_count() -> int:
        stats = client.get_inference_statistics("sharp", as_json=True)["model_stats"][0]
        return int(stats.get("inference_count", 0))

    before = sharp_count()
    order = ["splat", "ply", "spz", "ply-clean"]
    result = _infer_formats(client, photo, [fmt.encode() for fmt in order])
    assert sharp_count() - before == 1
    scenes = [bytes(item) for item in result.as_numpy("scenes").reshape(-1)]
    assert len(scenes) == 4
    for fmt, scene in zip(order, scenes, strict=True):
        assert scene == served[fmt][0], fmt
    (metadata,) = result.as_numpy("metadata").reshape(-1)
    assert json.loads(metadata) == served["ply"][1]


@pytest.mark.parametrize("formats", [[b"ply", b"gltf"], [b"spz", b"spz"]])
def test_an_unknown_or_repeated_format_fails_before_the_network(client, photo, formats) -> None:
    from tritonclient.utils import InferenceServerException

    from mlsharp.triton.backend import parse_error_text

    with pytest.raises(InferenceServerException) as raised:
        _infer_formats(client, photo, formats)
    assert parse_error_text(raised.value.message())[0] == "invalid_parameter"


def test_served_files_equal_the_eager_pipeline_byte_for_byte_on_the_same_network(
    served, photo: bytes, triton_repository: Path, triton_weights
) -> None:
    """Pre/post-processing add nothing: with the exported graph as the network, the pure
    pipeline (decode -> to_network_input -> network -> unproject -> encode) gives the same bytes."""
    network = support.OrtNetwork(triton_repository / "sharp" / "1" / "model.onnx")
    reference = support.pipeline(triton_weights.preset, triton_weights.seed, network)
    expected = reference.predict(decode_image(photo), tuple(OUTPUT_FORMATS))
    assert set(expected.encoded) == set(served)
    for fmt, data in expected.encoded.items():
        assert served[fmt][0] == data, f"{fmt}: served bytes differ from the eager pipeline"
        assert served[fmt][1] == json.loads(json.dumps(expected.metadata))


def test_served_ply_matches_eager_pytorch_within_the_export_tolerance(served, eager) -> None:
    """Raw outputs within 1e-3 of their range at export, so (support.assert_ply_matches_eager):
    xyz within 1e-3 of max|xyz|, covariances within 2e-3 of max|cov|, colours and opacities within
    1e-3; camera metadata elements exactly equal."""
    support.assert_ply_matches_eager(served["ply"][0], eager.encoded["ply"])


def _jpeg(width: int, height: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo_like_rgb(width, height, seed)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


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


def test_dynamic_batching_batches_concurrent_clients(client, triton_server) -> None:
    """>= 4 concurrent clients: `sharp` executes fewer times than it infers (real batches)."""

    def counts() -> tuple[int, int]:
        stats = client.get_inference_statistics("sharp", as_json=True)["model_stats"][0]
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))

    before = counts()
    image = _jpeg(256, 192, seed=11)
    errors: list[BaseException] = []

    def worker() -> None:
        own = support.grpc_client(triton_server.grpc_url)
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
