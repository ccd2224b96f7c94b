"""The GPU target's device stages against the numpy stages and the reference encoders.

Reference-vs-fast: on CPU tensors every output (network input, every file format, metadata) must
be EQUAL to the numpy stages', bytes and all; the same tests run on CUDA when one is present, where
the transcendental functions (pow, log) may differ by an ulp from the CPU's, so there the files are
compared decoded, within one float32 ulp or one quantisation step.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from mlsharp.errors import InvalidImageError, InvalidParameterError
from mlsharp.formats import decode_splat, decode_spz, encode_scene, encode_splat, encode_spz
from mlsharp.formats.ply import encode_ply_from_rows
from mlsharp.formats.splat import splat_row_bytes
from mlsharp.formats.spz import DEFAULT_COMPRESSLEVEL
from mlsharp.gaussians import CameraInfo, Gaussians3D, unproject
from mlsharp.sample_image import photo_like_jpeg
from mlsharp.triton import backend, device_stages
from mlsharp.triton.device_stages import DevicePostprocessStage, DevicePreprocessStage, instance_device
from mlsharp.triton.models import RAW_OUTPUT_NAMES
from mlsharp.triton.stages import PostprocessStage, PreprocessStage
from tests.gaussians.gaussians_factory import raw_gaussians
from tests.triton.test_backend_units import FakePbUtils, FakeRequest, FakeTensor

DEVICES = [
    pytest.param(torch.device("cpu"), id="cpu"),
    pytest.param(
        torch.device("cuda", 0),
        id="cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]
FORMATS = ("ply", "ply-clean", "spz", "splat")
#: the `test` preset's shapes (working size and gaussians per item)
WORKING_SIZE_PX, NUM_GAUSSIANS = 512, 131_072


def parameters(random_weights: bool = True) -> dict[str, str]:
    return {
        "working_size_px": str(WORKING_SIZE_PX),
        "model_id": "random-test-seed0",
        "random_weights": "true" if random_weights else "false",
    }


def bytes_column(values: list[bytes]) -> np.ndarray:
    return backend.bytes_column(values)


def preprocess_inputs(formats: tuple[str, ...] = ("ply",)) -> dict[str, np.ndarray]:
    """Two photos of different sizes and focal sources (EXIF 35 mm, then a focal_px override)."""
    images = [photo_like_jpeg(320, 240, seed=1), photo_like_jpeg(200, 300, seed=2, focal_35mm=None)]
    return {
        "image_bytes": bytes_column(images),
        "focal_px": np.array([[0.0], [250.0]], np.float32),
        "focal_mm": np.zeros((2, 1), np.float32),
        "formats": np.array([[f.encode() for f in formats]] * 2, dtype=np.object_),
    }


def postprocess_inputs(formats: tuple[str, ...] = FORMATS, n: int = NUM_GAUSSIANS) -> dict[str, np.ndarray]:
    """Raw outputs of a batch of 2 (seeded), two different cameras, the same formats per item."""
    items = [raw_gaussians(n, seed=seed) for seed in (0, 1)]
    factory_names = ("means", "singular_values", "quaternions", "colors", "opacities")  # raw output order
    arrays = {
        name: np.stack([item[key].numpy() for item in items])
        for name, key in zip(RAW_OUTPUT_NAMES, factory_names, strict=True)
    }
    infos = [
        {"focal_source": "exif", "source_format": "jpeg"},
        {"focal_source": "default", "source_format": "png"},
    ]
    return arrays | {
        "camera": np.array([[600.0, 640, 480], [300.5, 300, 500]], np.float64),
        "image_info": bytes_column([json.dumps(i).encode() for i in infos]),
        "formats": np.array([[f.encode() for f in formats]] * 2, dtype=np.object_),
    }


def on_device(inputs: dict[str, np.ndarray], device: torch.device) -> dict[str, Any]:
    """The raw outputs as torch tensors on ``device`` (what DLPack hands the GPU instance)."""
    return {k: torch.from_numpy(v).to(device) if k in RAW_OUTPUT_NAMES else v for k, v in inputs.items()}


def assert_same_file(fmt: str, got: bytes, ref: bytes, exact: bool) -> None:
    if exact:
        assert got == ref, f"{fmt}: {len(got)} bytes against {len(ref)}"
        return
    if fmt == "splat":  # quantised colours may move one step; positions and scales one ulp
        a, b = decode_splat(got), decode_splat(ref)
        np.testing.assert_allclose(a.means, b.means, rtol=2e-7)
        np.testing.assert_allclose(a.colors_srgb, b.colors_srgb, atol=1.01 / 255)
    elif fmt == "spz":
        a, b = decode_spz(got), decode_spz(ref)  # type: ignore[assignment]
        np.testing.assert_allclose(a.means, b.means, atol=1.01 / 4096)
        np.testing.assert_allclose(a.sh_dc, b.sh_dc, atol=1.01 / (0.15 * 255))
    else:
        header = b"end_header\n"
        assert got[: got.index(header)] == ref[: ref.index(header)]
        start = got.index(header) + len(header)
        n = int(got.split(b"element vertex ")[1].split(b"\n")[0])
        rows = np.frombuffer(got[start : start + 56 * n], np.float32)
        rows_ref = np.frombuffer(ref[start : start + 56 * n], np.float32)
        np.testing.assert_allclose(rows, rows_ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_preprocess_equals_the_numpy_stage(device: torch.device) -> None:
    inputs = preprocess_inputs()
    ref = PreprocessStage(parameters()).run(inputs)
    got = DevicePreprocessStage(parameters(), device).run(inputs)
    assert got["image"].device == device and got["disparity_factor"].device == device
    assert (
        got["image"].shape == (2, 3, WORKING_SIZE_PX, WORKING_SIZE_PX) and got["image"].dtype == torch.float32
    )
    assert got["disparity_factor"].shape == (2, 1) and got["disparity_factor"].dtype == torch.float32
    image = got["image"].cpu().numpy()
    if device.type == "cpu":
        np.testing.assert_array_equal(image, ref["image"])
    else:
        np.testing.assert_allclose(image, ref["image"], atol=1e-6)
    np.testing.assert_array_equal(got["disparity_factor"].cpu().numpy(), ref["disparity_factor"])
    np.testing.assert_array_equal(got["camera"], ref["camera"])
    assert got["camera"].dtype == np.float64
    assert got["image_info"].tolist() == ref["image_info"].tolist()
    assert got["camera"][1, 0] == 250.0  # the override reached the camera


def test_preprocess_errors_are_the_numpy_stages_typed_errors() -> None:
    stage = DevicePreprocessStage(parameters(), torch.device("cpu"))
    bad_format = preprocess_inputs(("ply", "obj"))
    with pytest.raises(InvalidParameterError, match="unknown output format 'obj'"):
        stage.run(bad_format)
    not_an_image = preprocess_inputs() | {"image_bytes": bytes_column([b"plain text", b"more"])}
    with pytest.raises(InvalidImageError):
        stage.run(not_an_image)


@pytest.mark.parametrize("random_weights", [True, False])
@pytest.mark.parametrize("device", DEVICES)
def test_postprocess_files_and_metadata_equal_the_numpy_stage(
    device: torch.device, random_weights: bool
) -> None:
    inputs = postprocess_inputs()
    ref = PostprocessStage(parameters(random_weights)).run(inputs)
    got = DevicePostprocessStage(parameters(random_weights), device).run(on_device(inputs, device))
    assert got["scenes"].shape == ref["scenes"].shape == (2, len(FORMATS))
    for i in range(2):
        for j, fmt in enumerate(FORMATS):
            assert_same_file(fmt, got["scenes"][i, j], ref["scenes"][i, j], exact=device.type == "cpu")
        assert got["metadata"][i, 0] == ref["metadata"][i, 0]  # quantiles from kthvalue: equal anywhere
    assert got["scenes"][0, 0] != got["scenes"][1, 0]  # two items, two scenes
    meta = json.loads(got["metadata"][1, 0])
    assert meta["random_weights"] is random_weights and meta["num_gaussians"] == NUM_GAUSSIANS
    assert meta["image_size"] == {"width_px": 300, "height_px": 500} and meta["focal_source"] == "default"
    assert (b"RANDOM WEIGHTS" in got["scenes"][0, 0]) is random_weights


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_raw_outputs_are_upcast_on_the_device(dtype: torch.dtype) -> None:
    inputs = postprocess_inputs(("ply", "splat"), n=4096)
    half = {k: torch.from_numpy(v).to(dtype) if k in RAW_OUTPUT_NAMES else v for k, v in inputs.items()}
    # the numpy stage on the same values, already in float32 (numpy has no bfloat16)
    upcast = {k: v.float().numpy() if isinstance(v, torch.Tensor) else v for k, v in half.items()}
    ref = PostprocessStage(parameters()).run(upcast)
    got = DevicePostprocessStage(parameters(), torch.device("cpu")).run(half)
    assert got["scenes"].tolist() == ref["scenes"].tolist()
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        DevicePostprocessStage(parameters(), torch.device("cpu")).run(
            half | {"opacities": torch.zeros((2, 4096), dtype=torch.float64)}
        )


def test_postprocess_refuses_a_bad_format_name() -> None:
    stage = DevicePostprocessStage(parameters(), torch.device("cpu"))
    with pytest.raises(InvalidParameterError, match="unknown output format 'obj'"):
        stage.run(on_device(postprocess_inputs(("spz", "obj"), n=64), torch.device("cpu")))
    with pytest.raises(InvalidParameterError, match="repeat"):
        stage.run(on_device(postprocess_inputs(("spz", "spz"), n=64), torch.device("cpu")))


def tied_scene(device: torch.device) -> Gaussians3D:
    """Gaussians whose .splat sort keys tie in groups (equal scales and alpha), with zero alphas
    and -0.0 among them: the order must be numpy's stable argsort exactly."""
    n = 3000
    gen = torch.Generator().manual_seed(3)
    group = torch.randint(0, 7, (n,), generator=gen)
    scales = (
        torch.tensor([0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3])[group, None] * torch.ones(1, 3)
    ).contiguous()
    alphas = torch.tensor([0.5, 0.25, 0.0, -0.0, 1.0, 0.5, 0.125])[group]
    scene = Gaussians3D(
        means=torch.randn(n, 3, generator=gen),
        scales=scales,
        quaternions=torch.randn(n, 4, generator=gen),
        colors_linear=torch.rand(n, 3, generator=gen),
        opacities=alphas,
    )
    return Gaussians3D(*(t.to(device) for t in vars(scene).values()))


@pytest.mark.parametrize("device", DEVICES)
def test_splat_rows_keep_numpys_stable_order_through_ties(device: torch.device) -> None:
    scene = tied_scene(device)
    got = splat_row_bytes(scene).cpu().numpy().tobytes()
    ref = encode_splat(scene)
    positions = np.frombuffer(got, np.dtype([("p", "<f4", 3), ("rest", "u1", 20)]))["p"]
    ref_positions = np.frombuffer(ref, np.dtype([("p", "<f4", 3), ("rest", "u1", 20)]))["p"]
    np.testing.assert_array_equal(positions, ref_positions)  # the same permutation
    if device.type == "cpu":
        assert got == ref


@pytest.mark.parametrize("level", [1, 9])
def test_spz_at_another_gzip_level_decodes_to_the_reference(level: int) -> None:
    camera = CameraInfo(600.0, 640, 480)
    raw = raw_gaussians(20_000, seed=5)
    scene = unproject(*raw.values(), camera, WORKING_SIZE_PX)
    stage = DevicePostprocessStage(parameters(), torch.device("cpu"), spz_compresslevel=level)
    fast = stage._encode("spz", scene, camera, (0.0, 1.0))
    ref = encode_spz(scene)
    a, b = decode_spz(fast), decode_spz(ref)
    for field in ("means", "opacities", "sh_dc", "log_scales", "quaternions"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert (fast == ref) is (level == DEFAULT_COMPRESSLEVEL)
    assert fast == encode_spz(scene, compresslevel=level)


def test_ply_from_rows_checks_its_rows() -> None:
    with pytest.raises(ValueError, match=r"\(N, 14\) float32"):
        encode_ply_from_rows(np.zeros((4, 13), np.float32), None)
    with pytest.raises(ValueError, match=r"\(N, 14\) float32"):
        encode_ply_from_rows(np.zeros((4, 14), np.float64), None)


def test_every_format_matches_encode_scene_on_an_odd_camera() -> None:
    """Non-square photo, non-integer focal: the unprojection's shear terms reach every format."""
    camera = CameraInfo(123.25, 97, 61)
    scene = unproject(*raw_gaussians(5000, seed=9).values(), camera, 64)
    stage = DevicePostprocessStage(parameters(False), torch.device("cpu"))
    from mlsharp.formats.attributes import disparity_quantiles

    for fmt in FORMATS:
        assert stage._encode(fmt, scene, camera, disparity_quantiles(scene.means)) == encode_scene(
            fmt, scene, camera
        )


# --- instance kind -> stage form, and the DLPack plumbing through a fake pb_utils ---


def model_args(kind: str, device_id: str = "0", **params: str) -> dict[str, str]:
    config = {"parameters": {k: {"string_value": v} for k, v in (parameters() | params).items()}}
    return {
        "model_config": json.dumps(config),
        "model_instance_kind": kind,
        "model_instance_device_id": device_id,
    }


def test_instance_device_follows_the_instance_kind_unless_forced() -> None:
    assert instance_device(
        {"model_instance_kind": "GPU", "model_instance_device_id": "1"}, {}
    ) == torch.device("cuda", 1)
    assert instance_device({"model_instance_kind": "CPU", "model_instance_device_id": "0"}, {}) is None
    assert instance_device({"model_instance_kind": "CPU"}, {"stage_device": "auto"}) is None
    assert instance_device({"model_instance_kind": "GPU"}, {"stage_device": "cpu-torch"}) == torch.device(
        "cpu"
    )
    with pytest.raises(ValueError, match="stage_device must be one of auto, cpu-torch"):
        instance_device({"model_instance_kind": "CPU"}, {"stage_device": "gpu"})
    assert device_stages.configured_spz_level({}) == DEFAULT_COMPRESSLEVEL
    assert device_stages.configured_spz_level({"spz_compresslevel": "1"}) == 1
    with pytest.raises(ValueError, match=r"1\.\.9"):
        device_stages.configured_spz_level({"spz_compresslevel": "0"})


def test_read_tensors_and_output_tensors_by_dlpack() -> None:
    gpu_like = FakeTensor("means", torch.arange(6, dtype=torch.float32).reshape(1, 2, 3), cpu=False)
    camera_on_gpu = FakeTensor("camera", torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64), cpu=False)
    request = FakeRequest(
        {
            "means": gpu_like,
            "colors": np.ones((1, 2, 3), np.float32),
            "camera": camera_on_gpu,
            "formats": bytes_column([b"spz"]),
        }
    )
    got = backend.read_tensors(FakePbUtils, request, ["means", "colors"], ["camera", "formats"])
    assert isinstance(got["means"], torch.Tensor) and got["means"].tolist() == [[[0, 1, 2], [3, 4, 5]]]
    assert isinstance(got["colors"], torch.Tensor) and got["colors"].dtype == torch.float32
    assert isinstance(got["camera"], np.ndarray) and got["camera"].tolist() == [[1.0, 2.0, 3.0]]
    assert got["formats"].tolist() == [[b"spz"]]
    with pytest.raises(KeyError, match="opacities"):
        backend.read_tensors(FakePbUtils, request, ["opacities"], [])
    out = backend.output_tensor(FakePbUtils, "image", torch.ones(2, 3).T)  # non-contiguous: made contiguous
    assert isinstance(out.array, torch.Tensor) and out.array.is_contiguous() and out.array.shape == (3, 2)
    plain = backend.output_tensor(FakePbUtils, "camera", np.zeros((1, 3)))
    assert isinstance(plain.array, np.ndarray)


def test_preprocess_executor_serves_both_forms_and_fails_one_request_alone() -> None:
    good = FakeRequest(preprocess_inputs())
    bad = FakeRequest(preprocess_inputs() | {"image_bytes": bytes_column([b"plain", b"text"])})
    numpy_run, numpy_form = device_stages.preprocess_executor(model_args("CPU"))
    torch_run, torch_form = device_stages.preprocess_executor(model_args("CPU", stage_device="cpu-torch"))
    assert "numpy" in numpy_form and "device stage on cpu" in torch_form
    ref, ref_bad = numpy_run(FakePbUtils, [good, bad])
    got, got_bad = torch_run(FakePbUtils, [good, bad])
    assert ref.error is None and got.error is None
    ref_out = {t.name: t.array for t in ref.output_tensors}
    got_out = {t.name: t.array for t in got.output_tensors}
    assert isinstance(got_out["image"], torch.Tensor) and isinstance(ref_out["image"], np.ndarray)
    np.testing.assert_array_equal(got_out["image"].numpy(), ref_out["image"])
    np.testing.assert_array_equal(got_out["camera"], ref_out["camera"])
    for response in (ref_bad, got_bad):
        assert backend.parse_error_text(response.error.message)[0] == "invalid_image"


def test_postprocess_executor_reads_gpu_like_inputs_and_isolates_a_bad_format() -> None:
    inputs = postprocess_inputs(("splat", "ply"), n=2048)
    gpu_like = {
        k: FakeTensor(k, torch.from_numpy(v), cpu=False) if k in RAW_OUTPUT_NAMES else v
        for k, v in inputs.items()
    }
    bad = inputs | {"formats": np.array([[b"obj"]] * 2, dtype=np.object_)}
    run, form = device_stages.postprocess_executor(
        model_args("CPU", stage_device="cpu-torch", spz_compresslevel="1")
    )
    assert "SPZ gzip level 1" in form
    good_response, bad_response = run(FakePbUtils, [FakeRequest(gpu_like), FakeRequest(bad)])
    ref = PostprocessStage(parameters()).run(inputs)
    assert good_response.error is None
    out = {t.name: t.array for t in good_response.output_tensors}
    assert (
        out["scenes"].tolist() == ref["scenes"].tolist()
        and out["metadata"].tolist() == ref["metadata"].tolist()
    )
    assert backend.parse_error_text(bad_response.error.message)[0] == "invalid_parameter"
    numpy_run, _ = device_stages.postprocess_executor(model_args("CPU"))
    (numpy_response,) = numpy_run(FakePbUtils, [FakeRequest(inputs)])
    assert {t.name: t.array for t in numpy_response.output_tensors}["scenes"].tolist() == ref[
        "scenes"
    ].tolist()


def test_spz_level_benchmark_reports_every_level_with_sane_numbers() -> None:
    from benchmarks.spz_levels import measure

    result = measure(2048, repeats=1, levels=[1, 6, 9])
    assert result["gaussians"] == 2048 and result["payload_bytes"] == 16 + 20 * 2048
    sizes = {row["level"]: row["bytes"] for row in result["levels"]}
    assert list(sizes) == [1, 6, 9] and sizes[9] <= sizes[6] <= sizes[1] < result["payload_bytes"]
    assert all(row["gzip_s"] > 0 for row in result["levels"])
