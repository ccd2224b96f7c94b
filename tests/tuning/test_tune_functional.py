"""``mlsharp tune`` against a real tritonserver and the real perf_analyzer on the `test` preset.

Two candidates, one concurrency level, count windows of two requests: the point is that the whole
path works (scratch repositories load, perf_analyzer measures the ensemble, the winner lands in the
repository and Triton loads it, the cache short-circuits the next run), not how fast anything is.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from mlsharp import cli
from mlsharp.triton.models import RepositoryOptions
from mlsharp.triton.repository import OPTIONS_FILE, load_options, write_configs
from mlsharp_tools.perf import run as perf_run
from mlsharp_tools.tuning import sweep as sweep_mod
from mlsharp_tools.tuning.apply import with_fields
from tests.conftest import served
from tests.requires import missing

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def _perf_analyzer() -> None:
    from mlsharp_tools.perf.tool import PerfAnalyzer, PerfToolError

    try:
        PerfAnalyzer().ensure()
    except (PerfToolError, subprocess.CalledProcessError) as error:
        missing(f"perf_analyzer from tritonclient==2.50.0 cannot be installed/run here: {error}")


def _copy_repository(export_dir: Path, dest: Path) -> Path:
    """The session's repository, copied (tuning changes it); typed options from the manifest if an
    older export given through the environment lacks repository.json."""
    shutil.copytree(export_dir / "model_repository", dest)
    if not (dest / OPTIONS_FILE).is_file():
        manifest = json.loads((export_dir / "export_manifest.json").read_text())
        write_configs(dest, RepositoryOptions(**manifest["repository_options"]))
    return dest


class _Forbidden:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a cached result must not start tritonserver")


def test_tune_measures_the_real_ensemble_applies_the_winner_and_then_uses_the_cache(
    triton_export_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _perf_analyzer()
    repo = _copy_repository(triton_export_dir, tmp_path / "model_repository")
    argv = [
        "tune", "--repository", str(repo), "--max-batch", "1,2", "--queue-delay-us", "0",
        "--sharp-instances", "1", "--concurrency", "1", "--request-count", "2", "--max-trials", "3",
        "--stability-percentage", "999", "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    real_measure = perf_run.measure
    levels: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> perf_run.Measurement:
        levels.append(kwargs["concurrency"])
        return real_measure(*args, **kwargs)

    monkeypatch.setattr(perf_run, "measure", counting)
    assert cli.main(argv) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert levels == [1, 1] and "winner: candidate" in out

    tuning = json.loads((repo / "tuning.json").read_text())
    assert [c["status"] for c in tuning["candidates"]] == ["measured", "measured"]
    assert len(tuning["points"]) == 2 and tuning["tritonserver_version"] == "2.51.0"
    for point in tuning["points"]:
        assert point["throughput_infer_s"] > 0
        assert 0 < point["p50_ms"] <= point["p95_ms"] <= point["p99_ms"]
        assert sum(point["sharp_batches"].values()) >= 2  # the batches Triton formed for `sharp`
    winner = tuning["winner"]["fields"]
    assert load_options(repo) == with_fields(load_options(repo), winner)
    configs = {
        name: text_format.Parse((repo / name / "config.pbtxt").read_text(), pb.ModelConfig())
        for name in ("preprocess", "sharp", "postprocess", "mlsharp")
    }
    assert {c.max_batch_size for c in configs.values()} == {winner["max_batch_size"]}
    sharp = configs["sharp"]
    assert list(sharp.dynamic_batching.preferred_batch_size) == winner["preferred_batch_sizes"]
    assert sharp.dynamic_batching.max_queue_delay_microseconds == 0
    assert not list(tmp_path.glob(".model_repository-tune-*")), "scratch repositories removed"

    with served(repo) as server:  # the written repository is what Triton serves
        url = f"http://{server.http_url}/v2/models/sharp/config"
        with urllib.request.urlopen(url, timeout=10) as response:
            served_config = json.load(response)
    assert served_config["max_batch_size"] == winner["max_batch_size"]

    monkeypatch.setattr(sweep_mod, "TritonServer", _Forbidden)
    monkeypatch.setattr(perf_run, "measure", lambda *a, **k: pytest.fail("a cached result must not measure"))
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "cached result" in out and "applied without measuring" in out and levels == [1, 1]
    assert json.loads((repo / "tuning.json").read_text())["from_cache"] is True
