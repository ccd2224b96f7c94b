"""Checkpoint loading, verification, random weights and offline download behaviour."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from mlsharp.checkpoint import (
    CHECKPOINT_URL,
    OFFICIAL_MODEL_ID,
    default_checkpoint_path,
    download_checkpoint,
    load_predictor,
    load_state_dict,
    sha256_file,
)
from mlsharp.errors import CheckpointError, InvalidParameterError


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = load_predictor("tiny", random_weights=True, seed=3).model.state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save(state, path)
    return path, state


def test_constants_and_default_path():
    assert CHECKPOINT_URL == "https://ml-site.cdn-apple.com/models/sharp/sharp_2572gikvuh.pt"
    assert OFFICIAL_MODEL_ID == "sharp_2572gikvuh"
    path = default_checkpoint_path()
    assert path == Path(torch.hub.get_dir()) / "checkpoints" / "sharp_2572gikvuh.pt"


def test_checkpoint_loads_strictly(tiny_checkpoint):
    path, state = tiny_checkpoint
    loaded = load_predictor("tiny", checkpoint=path)
    sha = sha256_file(path)
    assert loaded.checkpoint_sha256 == sha and len(sha) == 64
    assert loaded.model_id == f"tiny-{sha[:12]}"
    assert loaded.random_weights is False
    assert not loaded.model.training
    assert loaded.config.name == "tiny"
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_nested_state_dict_is_unwrapped(tiny_checkpoint, tmp_path):
    _path, state = tiny_checkpoint
    nested = tmp_path / "nested.pt"
    torch.save({"state_dict": state, "epoch": 3}, nested)
    assert set(load_state_dict(nested)) == set(state)


def test_missing_key_is_named(tiny_checkpoint, tmp_path):
    _, state = tiny_checkpoint
    broken = dict(state)
    del broken["prediction_head.texture_prediction_head.bias"]
    broken["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pt"
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as info:
        load_predictor("tiny", checkpoint=path)
    message = str(info.value)
    assert "prediction_head.texture_prediction_head.bias" in message
    assert "1 missing" in message and "extra.weight" in message


def test_wrong_preset_reports_shape_mismatch(tiny_checkpoint):
    path, _ = tiny_checkpoint
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_predictor("test", checkpoint=path)  # 128 px ViT: different pos_embed


def test_unreadable_and_absent_checkpoints(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt is not a valid SHARP checkpoint \(16 bytes"):
        load_state_dict(junk)
    with pytest.raises(CheckpointError, match="not found"):
        load_predictor("tiny", checkpoint=tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no official checkpoint"):
        load_predictor("tiny")


def test_download_offline_fails_fast(tmp_path):
    url = "http://127.0.0.1:9/x.pt"
    dest = tmp_path / "sub" / "x.pt"
    start = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        download_checkpoint(url, dest, progress=False)
    assert time.monotonic() - start < 5.0
    assert url in str(info.value) and "--checkpoint" in str(info.value)
    assert list(dest.parent.iterdir()) == []  # no partial file left behind


def test_download_writes_atomically(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 5000)
    dest = tmp_path / "out" / "ckpt.pt"
    assert download_checkpoint(src.as_uri(), dest, progress=False) == dest
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["ckpt.pt"]
    assert sha256_file(dest) == sha256_file(src)


def test_random_weights_are_deterministic_and_labelled(caplog):
    a = load_predictor("test", random_weights=True, seed=7)
    b = load_predictor("test", random_weights=True, seed=7)
    c = load_predictor("test", random_weights=True, seed=8)
    assert a.model_id == "random-test-seed7" and a.random_weights and a.checkpoint_sha256 is None
    assert "RANDOM WEIGHTS" in caplog.text
    key = "prediction_head.texture_prediction_head.weight"
    assert torch.count_nonzero(a.model.state_dict()[key]) > 0  # heads randomised
    head_bias = "monodepth_model.monodepth_predictor.head.4.bias"
    assert torch.count_nonzero(a.model.state_dict()[head_bias]) > 0
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert not torch.equal(a.model.state_dict()[key], c.model.state_dict()[key])


def test_random_weights_with_checkpoint_is_rejected(tiny_checkpoint):
    with pytest.raises(InvalidParameterError):
        load_predictor("tiny", checkpoint=tiny_checkpoint[0], random_weights=True)
