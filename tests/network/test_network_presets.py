"""Presets: names, derived sizes and the documented tiny hyper-parameters."""

from __future__ import annotations

import dataclasses

import pytest

from mlsharp.errors import InvalidParameterError
from mlsharp.presets import PRESET_NAMES, get_preset


def test_preset_names_and_sizes():
    assert PRESET_NAMES == ("full", "tiny", "test")
    full, tiny, test = (get_preset(n) for n in PRESET_NAMES)
    assert (full.working_size_px, tiny.working_size_px, test.working_size_px) == (1536, 1536, 512)
    assert full.num_gaussians == tiny.num_gaussians == 1_179_648
    assert test.num_gaussians == 131_072
    assert full.use_patch_overlap and tiny.use_patch_overlap and not test.use_patch_overlap
    assert full.name == "full" and test.name == "test"


def test_tiny_hyper_parameters():
    tiny = get_preset("tiny")
    vit = tiny.encoder.vit
    assert (vit.embed_dim, vit.depth, vit.num_heads, vit.img_size_px, vit.num_classes) == (64, 4, 2, 384, 0)
    assert tiny.encoder.dims_encoder == (32, 64, 64, 64)
    assert tiny.encoder.hook_block_ids == (0, 1, 2, 3)
    assert tiny.depth.decoder_dim == 32
    assert (tiny.gaussian_decoder.decoder_dim, tiny.gaussian_decoder.dim_out) == (16, 16)
    assert (tiny.alignment.base_width, tiny.alignment.steps) == (8, 2)
    test = get_preset("test")
    assert test.encoder.vit.img_size_px == 128
    assert dataclasses.replace(test.encoder.vit, img_size_px=384) == vit


def test_presets_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("full").working_size_px = 512  # type: ignore[misc]


def test_unknown_preset_lists_valid_names():
    with pytest.raises(InvalidParameterError, match="full, tiny, test") as info:
        get_preset("huge")
    assert "'huge'" in str(info.value)
    assert info.value.code == "invalid_parameter"
