"""The transfer probe's CPU dry run: the report's structure and the bytes of every tensor set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.transfer_probe import PINNED_ON_CPU, transfer_report
from mlsharp.presets import get_preset

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_dry_run_reports_test_preset_sizes() -> None:
    report = transfer_report("cpu", repeats=1, sizes="test", batches=(1, 2))
    config = get_preset("test")
    size_px, gaussians = config.working_size_px, config.num_gaussians
    assert (report["device"], report["pinned"]) == ("cpu", PINNED_ON_CPU)
    assert (report["working_size_px"], report["num_gaussians"]) == (512, 131_072) == (size_px, gaussians)
    rows = report["rows"]
    # 2 batches x 2 dtypes x (image, raw_outputs) x (pageable, pinned)
    assert len(rows) == 16
    for row in rows:
        width = 4 if row["dtype"] == "fp32" else 2
        b = row["batch"]
        if row["name"] == "image":
            assert row["direction"] == "host_to_device" and row["shapes"] == [[b, 3, size_px, size_px]]
            assert row["bytes"] == b * 3 * size_px * size_px * width
        else:
            assert row["direction"] == "device_to_host" and len(row["shapes"]) == 5
            assert row["bytes"] == b * gaussians * 14 * width  # 3 + 3 + 4 + 3 + 1 values per gaussian
        if row["memory"] == "pinned":
            assert row["median_s"] is None and row["skipped"] == f"pinned: {PINNED_ON_CPU}"
        else:
            assert row["median_s"] > 0 and row["gb_per_s"] > 0


def test_full_preset_output_bytes_per_item_are_66_mb() -> None:
    from benchmarks.transfer_probe import tensor_sets

    sets = {(s.name, s.batch, s.dtype): s for s in tensor_sets("full")}
    assert sets["raw_outputs", 1, "fp32"].bytes == 1_179_648 * 14 * 4 == 66_060_288
    assert sets["image", 4, "fp32"].bytes == 4 * 3 * 1536 * 1536 * 4
    assert sets["raw_outputs", 2, "fp16"].bytes == sets["raw_outputs", 1, "fp32"].bytes
    assert sorted({s.batch for s in sets.values()}) == [1, 2, 4]


def test_command_line_dry_run_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "transfer.json"
    command = [sys.executable, "benchmarks/transfer_probe.py", "--device", "cpu", "--sizes", "test",
               "--repeats", "1", "--batches", "1", "--out", str(out)]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report == json.loads(result.stdout) | {"rows": report["rows"]}
    assert {r["memory"] for r in report["rows"]} == {"pageable", "pinned"} and len(report["rows"]) == 8
