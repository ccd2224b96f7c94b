"""The benchmark script runs end to end at a tiny size and prints its table honestly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_runs_tiny() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "unproject_ply.py"),
            "--num-gaussians",
            "2000",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "gaussians: 2,000" in out
    for row in ("unproject", "encode PLY", "unproject + PLY", "target unproject + PLY <= 0.5 s"):
        assert row in out
    diff = float(out.split("max relative covariance difference ours vs baseline:")[1].split()[0])
    assert diff < 1e-5  # ours and the SVD baseline describe the same gaussians
