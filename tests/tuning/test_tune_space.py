"""Candidate generation: the product of the given lists, merging, preferred variants, fp16 rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsharp_tools.tuning.space import (
    DEFAULT_SWEEP,
    TuneError,
    check_precisions,
    default_concurrency,
    expand,
    int_list,
    precision_list,
    preferred_list,
    resolve_preferred,
    space_from_lists,
)
from tests.conftest import repository_options as options
from tests.tuning.tune_helpers import stub_repository


def test_the_product_is_expanded_in_order_with_derived_concurrency() -> None:
    base = options(max_batch_size=8, preprocess_instances=3)
    space = space_from_lists(
        base, max_batch_sizes=(2, 4), queue_delays_us=(0, 20_000), sharp_instances=(1, 2)
    )
    candidates, notes = expand(base, space)
    assert notes == []
    assert [c.index for c in candidates] == [1, 2, 3, 4, 5, 6, 7, 8]
    summary = [
        (c.options.max_batch_size, c.options.max_queue_delay_us, c.options.sharp_instances)
        for c in candidates
    ]
    assert summary == [
        (2, 0, 1), (2, 0, 2), (2, 20_000, 1), (2, 20_000, 2),
        (4, 0, 1), (4, 0, 2), (4, 20_000, 1), (4, 20_000, 2),
    ]  # fmt: skip
    assert candidates[0].concurrency == (1, 2, 4)  # 1, one full batch, twice that
    assert candidates[-1].concurrency == (1, 8, 16)  # batch 4 x 2 sharp instances
    assert candidates[-1].options.preferred_batch_sizes == (2, 4)  # pow2 by default
    for cand in candidates:  # knobs not swept keep the repository's values
        assert cand.options.preprocess_instances == 3
        assert cand.options.model_id == base.model_id and cand.options.precision == "fp32"


def test_max_batch_one_merges_preferred_and_delay_variants() -> None:
    base = options()
    space = space_from_lists(
        base,
        max_batch_sizes=(1, 2),
        preferred=("none", "max", "pow2"),
        queue_delays_us=(0, 20_000),
        sharp_instances=(1,),
    )
    candidates, notes = expand(base, space)
    shapes = [
        (c.options.max_batch_size, c.options.preferred_batch_sizes, c.options.max_queue_delay_us)
        for c in candidates
    ]
    # batch 1: six combinations, one server; batch 2: max and pow2 both mean (2,)
    assert shapes == [(1, (), 0), (2, (), 0), (2, (), 20_000), (2, (2,), 0), (2, (2,), 20_000)]
    assert notes == [
        "merged 7 combination(s) identical to another candidate "
        "(max batch 1 ignores preferred sizes and queue delay)"
    ]


def test_explicit_preferred_sizes_above_the_max_batch_are_dropped_with_a_note() -> None:
    base = options()
    space = space_from_lists(
        base, max_batch_sizes=(2, 4), preferred=("4",), queue_delays_us=(0,), sharp_instances=(1,)
    )
    candidates, notes = expand(base, space)
    assert [(c.options.max_batch_size, c.options.preferred_batch_sizes) for c in candidates] == [(4, (4,))]
    assert notes == ["dropped: preferred 4 exceeds max batch 2"]


def test_a_space_with_nothing_valid_is_refused() -> None:
    base = options()
    space = space_from_lists(base, max_batch_sizes=(2,), preferred=("8",))
    with pytest.raises(TuneError, match="no valid candidate"):
        expand(base, space)


def test_explicit_concurrency_applies_to_every_candidate() -> None:
    base = options()
    candidates, _ = expand(base, space_from_lists(base, sharp_instances=(1,)), concurrency=[1, 3])
    assert {c.concurrency for c in candidates} == {(1, 3)}


@pytest.mark.parametrize(
    ("variant", "max_batch", "sizes"),
    [("none", 8, ()), ("max", 8, (8,)), ("pow2", 8, (2, 4, 8)), ("pow2", 6, (2, 4)), ("4+2", 4, (2, 4))],
)
def test_preferred_variants_resolve_per_max_batch(
    variant: str, max_batch: int, sizes: tuple[int, ...]
) -> None:
    assert resolve_preferred(variant, max_batch) == sizes


def test_default_concurrency_reaches_full_and_double_batches() -> None:
    assert default_concurrency(1, 1) == (1, 2)
    assert default_concurrency(4, 2) == (1, 8, 16)


def test_default_space_sweeps_batch_delay_and_instances_and_keeps_the_rest() -> None:
    base = options(postprocess_instances=3, intra_op_threads=1)
    space = space_from_lists(base)
    assert space.max_batch_sizes == DEFAULT_SWEEP["max_batch_sizes"] == (1, 2, 4)
    assert space.queue_delays_us == (0, 20_000) and space.sharp_instances == (1, 2)
    assert space.postprocess_instances == (3,) and space.intra_op_threads == (1,)
    assert space.precisions == ("fp32",)
    candidates, _ = expand(base, space)
    assert len(candidates) == 10  # batch 1: 2 (instances); batches 2 and 4: 2 delays x 2 instances each


def test_list_parsers_refuse_nonsense() -> None:
    assert int_list("1, 2,2,4") == (1, 2, 4)
    assert preferred_list("none,MAX,2+4") == ("none", "max", "2+4")
    assert precision_list("fp16,fp32") == ("fp16", "fp32")
    for parse, text in (
        (int_list, "1,x"),
        (int_list, "-1"),
        (preferred_list, "some"),
        (precision_list, "int8"),
    ):
        with pytest.raises(ValueError):
            parse(text)


def test_fp16_is_refused_on_a_cpu_repository(tmp_path: Path) -> None:
    base = options("cpu")
    repo = stub_repository(tmp_path, base)
    with pytest.raises(TuneError, match="needs a GPU repository"):
        check_precisions(base, space_from_lists(base, precisions=("fp32", "fp16")), repo)


def test_fp16_with_the_cuda_provider_needs_the_converted_graph(tmp_path: Path) -> None:
    base = options("gpu", gpu_runtime="cuda")
    space = space_from_lists(base, precisions=("fp32", "fp16"))
    repo = stub_repository(tmp_path / "plain", base)
    with pytest.raises(TuneError, match=r"model\.fp16\.onnx"):
        check_precisions(base, space, repo)
    check_precisions(base, space, stub_repository(tmp_path / "both", base, fp16=True))


def test_fp16_with_the_pytorch_runtime_needs_its_fp16_weights(tmp_path: Path) -> None:
    base = options("gpu", gpu_runtime="torch", precision="fp16")
    space = space_from_lists(base, precisions=("fp16",))
    repo = stub_repository(tmp_path, base)
    check_precisions(base, space, repo)
    (repo / "sharp" / "1" / "model.fp16.pt").unlink()
    with pytest.raises(TuneError, match=r"model\.fp16\.pt"):
        check_precisions(base, space, repo)


def test_an_int8_repository_keeps_its_precision(tmp_path: Path) -> None:
    base = options("cpu", precision="int8", model_id="random-test-seed0+int8")
    repo = tmp_path / "model_repository"
    check_precisions(base, space_from_lists(base), repo)  # default: the repository's own precision
    with pytest.raises(TuneError, match="chosen at export"):
        check_precisions(base, space_from_lists(base, precisions=("fp32",)), repo)


def test_an_openvino_repository_keeps_its_precision_and_runtime(tmp_path: Path) -> None:
    base = options("cpu", runtime="openvino", precision="bf16", model_id="random-test-seed0+ov-bf16")
    repo = tmp_path / "model_repository"
    space = space_from_lists(base)  # default: the repository's own precision
    check_precisions(base, space, repo)
    candidates, _ = expand(base, space)
    assert {(c.options.runtime, c.options.precision, c.options.model_id) for c in candidates} == {
        ("openvino", "bf16", "random-test-seed0+ov-bf16")
    }
    with pytest.raises(TuneError, match="OpenVINO bf16"):
        check_precisions(base, space_from_lists(base, precisions=("fp32",)), repo)
