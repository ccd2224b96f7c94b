"""``benchmarks/render.py`` at a tiny size: it runs and reports sane values (never a timing)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.render import main


def test_render_benchmark_runs_tiny(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    video = tmp_path / "orbit.mp4"
    args = ["--side", "32", "--size", "64x48", "--frames", "3", "--repeats", "1", "--video", str(video)]
    assert main([*args, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["gaussians"] == 2 * 32 * 32 and result["size"] == [64, 48]
    assert result["orbit_frames"] == 3 and result["orbit_s"] > 0 and len(result["still_s"]) == 1
    assert result["machine"]["cpus"] >= 1 and video.stat().st_size > 0
