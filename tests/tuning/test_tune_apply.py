"""Writing a winner: every dependent config.pbtxt through the typed config, parsed back by Triton's schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from mlsharp.triton.repository import load_options
from mlsharp_tools.tuning.apply import TUNING_FILE, apply_winner, tuned_fields, with_fields
from mlsharp_tools.tuning.space import TuneError
from tests.conftest import repository_options as options
from tests.tuning.tune_helpers import snapshot, stub_repository


def _parsed(repo: Path, name: str) -> pb.ModelConfig:
    return text_format.Parse((repo / name / "config.pbtxt").read_text(), pb.ModelConfig())


def test_the_winner_reaches_every_config_that_depends_on_it(tmp_path: Path) -> None:
    before = options(max_batch_size=8, preprocess_instances=2, postprocess_instances=2)
    repo = stub_repository(tmp_path, before)
    fields = tuned_fields(before) | {
        "max_batch_size": 4,
        "preferred_batch_sizes": [4],
        "max_queue_delay_us": 5000,
        "sharp_instances": 2,
        "preprocess_instances": 3,
    }
    winner = with_fields(before, fields)
    written = apply_winner(repo, winner, {"winner": fields})
    assert sorted(str(p.relative_to(repo)) for p in written) == [
        "mlsharp/config.pbtxt", "postprocess/config.pbtxt", "preprocess/config.pbtxt",
        "repository.json", "sharp/config.pbtxt", TUNING_FILE,
    ]  # fmt: skip
    configs = {name: _parsed(repo, name) for name in ("preprocess", "sharp", "postprocess", "mlsharp")}
    assert {name: c.max_batch_size for name, c in configs.items()} == dict.fromkeys(configs, 4)
    sharp = configs["sharp"]
    assert list(sharp.dynamic_batching.preferred_batch_size) == [4]
    assert sharp.dynamic_batching.max_queue_delay_microseconds == 5000
    assert [(g.kind, g.count) for g in sharp.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 2)]
    assert sum(g.count for g in configs["preprocess"].instance_group) == 3
    assert sum(g.count for g in configs["postprocess"].instance_group) == 2
    assert sharp.parameters["model_id"].string_value == "random-test-seed0"  # untouched fields survive
    assert load_options(repo) == winner
    assert json.loads((repo / TUNING_FILE).read_text()) == {"winner": fields}
    assert not list(repo.glob(".*.tmp")), "no temporary files left behind"


def test_no_preferred_sizes_round_trip_as_an_empty_list(tmp_path: Path) -> None:
    before = options(max_batch_size=2)
    repo = stub_repository(tmp_path, before)
    winner = with_fields(
        before, tuned_fields(before) | {"preferred_batch_sizes": [], "max_queue_delay_us": 0}
    )
    apply_winner(repo, winner, {})
    sharp = _parsed(repo, "sharp")
    assert list(sharp.dynamic_batching.preferred_batch_size) == []
    assert sharp.HasField("dynamic_batching")
    assert load_options(repo).preferred_batch_sizes == ()


def test_gpu_fp16_winner_switches_the_cuda_graph(tmp_path: Path) -> None:
    before = options("gpu", gpu_runtime="cuda")
    repo = stub_repository(tmp_path, before, fp16=True)
    apply_winner(repo, with_fields(before, {"precision": "fp16"}), {})
    assert _parsed(repo, "sharp").default_model_filename == "model.fp16.onnx"


def test_an_invalid_winner_writes_nothing(tmp_path: Path) -> None:
    before = options(max_batch_size=4)
    repo = stub_repository(tmp_path, before)
    files = snapshot(repo)
    bad = with_fields(before, {"max_batch_size": 2, "preferred_batch_sizes": [4]})
    with pytest.raises(ValueError, match="preferred batch sizes"):
        apply_winner(repo, bad, {"winner": "bad"})
    assert snapshot(repo) == files


def test_results_cannot_set_fields_the_tuner_does_not_own() -> None:
    with pytest.raises(TuneError, match="model_id"):
        with_fields(options(), {"model_id": "someone-else"})
