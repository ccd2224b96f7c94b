"""Checkpoint download, verification and model loading.

The official weights (~2.6 GB) live on Apple's CDN and are cached in the torch hub directory.
Offline machines must fail at once with a message that says how to proceed (`--checkpoint PATH`)
rather than hang. Random-weight models are available for tests and demos, and are always
labelled as such (model id, flag, loud log line) so nobody mistakes their output for SHARP's.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from mlsharp.errors import CheckpointError, InvalidParameterError
from mlsharp.network import SharpPredictor
from mlsharp.presets import SharpConfig, get_preset

logger = logging.getLogger(__name__)

CHECKPOINT_URL = "https://ml-site.cdn-apple.com/models/sharp/sharp_2572gikvuh.pt"
OFFICIAL_MODEL_ID = "sharp_2572gikvuh"
OFFICIAL_FILENAME = f"{OFFICIAL_MODEL_ID}.pt"
#: seconds to wait for a connection (and for each read): short, so offline fails at once
CONNECT_TIMEOUT_S = 10.0
_CHUNK_BYTES = 1 << 20
_MAX_KEYS_LISTED = 5


@dataclass
class LoadedPredictor:
    """A ready-to-run model (eval mode) and what it is."""

    model: SharpPredictor
    config: SharpConfig
    model_id: str
    random_weights: bool
    checkpoint_sha256: str | None


def default_checkpoint_path() -> Path:
    """Where the official checkpoint is cached: <torch hub dir>/checkpoints/sharp_2572gikvuh.pt."""
    return Path(torch.hub.get_dir()) / "checkpoints" / OFFICIAL_FILENAME


def _download_hint(url: str) -> str:
    return (
        f"could not download the SHARP checkpoint from {url}; download it on a connected machine "
        "and pass --checkpoint PATH"
    )


def download_checkpoint(url: str, dest: str | Path, progress: bool = True) -> Path:
    """Download `url` to `dest` atomically (temp file in the same folder, then rename)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while chunk := resp.read(_CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp_name, dest)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        Path(tmp_name).unlink(missing_ok=True)
        raise CheckpointError(f"{_download_hint(url)} ({exc})") from exc
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely (weights_only) onto the CPU; unwraps {"state_dict": ...}."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle refused by weights_only, truncated file...
        # torch's own text advises weights_only=False, i.e. running the file's pickled code: never relay it
        raise _not_a_checkpoint(path, "PyTorch cannot read it as a tensor file") from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise _not_a_checkpoint(path, "it does not hold a state_dict of tensors")
    return dict(obj)


def _not_a_checkpoint(path: Path, why: str) -> CheckpointError:
    """Name the file by size and hash, so a truncated download or a wrong file is recognisable."""
    size = path.stat().st_size
    return CheckpointError(
        f"{path} is not a valid SHARP checkpoint ({size:,} bytes, sha256 {sha256_file(path)[:12]}...): "
        f"{why}. Download it again, or pass the official {OFFICIAL_FILENAME} with --checkpoint."
    )


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_KEYS_LISTED])
    more = len(keys) - _MAX_KEYS_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "")


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "") -> None:
    """Raise CheckpointError naming missing/unexpected/mis-shaped keys; silent when they match."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = sorted(
        f"{k} {tuple(state_dict[k].shape)} != {shape}"
        for k, shape in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != shape
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listed(unexpected)}")
    if mis_shaped:
        problems.append(f"{len(mis_shaped)} shape mismatches: {_listed(mis_shaped)}")
    if problems:
        where = f" {source}" if source else ""
        raise CheckpointError(f"checkpoint{where} does not match the network: " + "; ".join(problems))


def randomize_zero_heads(model: SharpPredictor) -> None:
    """Give the zero-initialised layers random values so random-weight tests exercise the deltas."""
    head = model.prediction_head
    for conv in (head.geometry_prediction_head, head.texture_prediction_head):
        conv.reset_parameters()
    last = model.monodepth_model.monodepth_predictor.head[4]
    assert isinstance(last, nn.Conv2d)
    last.reset_parameters()


def _random_predictor(config: SharpConfig, seed: int) -> SharpPredictor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SharpPredictor(config)
        randomize_zero_heads(model)
    return model


def _resolve_checkpoint(config: SharpConfig, checkpoint: str | Path | None, download: bool) -> Path:
    if checkpoint is not None:
        return Path(checkpoint)
    if config.name != "full":
        raise CheckpointError(
            f"there is no official checkpoint for preset {config.name!r}; pass --checkpoint PATH "
            "or use random weights"
        )
    path = default_checkpoint_path()
    if path.is_file():
        return path
    if not download:
        raise CheckpointError(f"checkpoint not found at {path}; pass --checkpoint PATH")
    logger.info("downloading the SHARP checkpoint from %s to %s", CHECKPOINT_URL, path)
    return download_checkpoint(CHECKPOINT_URL, path)


def load_predictor(
    preset: str | SharpConfig,
    checkpoint: str | Path | None = None,
    random_weights: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    download: bool = True,
) -> LoadedPredictor:
    """Build the network for `preset` with official/given weights, or random ones (clearly labelled).

    model_id: OFFICIAL_MODEL_ID for the full preset loaded from a file named like the official one
    (the default cache path included), otherwise `<preset>-<sha256[:12]>`; random weights give
    `random-<preset>-seed<seed>`.
    """
    config = get_preset(preset) if isinstance(preset, str) else preset
    if random_weights:
        if checkpoint is not None:
            raise InvalidParameterError("random weights and a checkpoint are mutually exclusive")
        model = _random_predictor(config, seed)
        model_id, sha = f"random-{config.name}-seed{seed}", None
        logger.warning(
            "!!! USING RANDOM WEIGHTS (%s): outputs are NOT SHARP predictions, for testing only !!!",
            model_id,
        )
    else:
        path = _resolve_checkpoint(config, checkpoint, download)
        state_dict = load_state_dict(path)
        with torch.device("meta"):  # no random init, no second copy of 2.8 GB
            model = SharpPredictor(config)
        check_state_dict(model, state_dict, source=str(path))
        model.load_state_dict(state_dict, strict=True, assign=True)
        sha = sha256_file(path)
        official = config.name == "full" and path.name == OFFICIAL_FILENAME
        model_id = OFFICIAL_MODEL_ID if official else f"{config.name}-{sha[:12]}"
        logger.info("loaded %s from %s (sha256 %s)", model_id, path, sha)
    model = model.to(device).eval().requires_grad_(False)
    return LoadedPredictor(model, config, model_id, random_weights, sha)
