"""The result cache: a stable key that changes with everything a result depends on; 7-day validity."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlsharp_tools.tuning import hardware
from mlsharp_tools.tuning.cache import TuneCache, cache_key, default_cache_dir, key_material

HARDWARE = {
    "cpu_model": "AMD EPYC 7B13",
    "logical_cores": 2,
    "memory_gib": 24,
    "gpus": [],
    "tritonserver": "nvidia-pytriton 0.7.0, tritonserver binary 19714617 bytes",
}
T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


def material(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "hardware": HARDWARE,
        "model_id": "random-test-seed0",
        "preset": "test",
        "target": "cpu",
        "gpu_runtime": "tensorrt",
        "objective": {"kind": "throughput", "p95_bound_ms": None, "tie_percent": 2.0},
        "space": {"max_batch_sizes": [1, 2], "sharp_instances": [1]},
        "concurrency": None,
        "measurement": {"protocol": "grpc", "request_count": 16},
    }
    values.update(changes)
    return key_material(**values)


def test_the_key_is_stable_across_calls_and_dict_order() -> None:
    key = cache_key(material())
    assert key == cache_key(material())
    reordered = dict(reversed(list(copy.deepcopy(material()).items())))
    reordered["hardware"] = dict(reversed(list(HARDWARE.items())))
    assert cache_key(reordered) == key
    assert len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize(
    "changes",
    [
        {"hardware": HARDWARE | {"cpu_model": "Intel Xeon Platinum 8480+"}},
        {"hardware": HARDWARE | {"logical_cores": 4}},
        {"hardware": HARDWARE | {"memory_gib": 32}},
        {"hardware": HARDWARE | {"gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559}]}},
        {"hardware": HARDWARE | {"tritonserver": "nvidia-pytriton 0.8.0, tritonserver binary 1 bytes"}},
        {"model_id": "sharp_2572gikvuh"},
        {"preset": "full"},
        {"target": "gpu"},
        {"objective": {"kind": "latency", "p95_bound_ms": 800.0, "tie_percent": 2.0}},
        {"objective": {"kind": "latency", "p95_bound_ms": 900.0, "tie_percent": 2.0}},
        {"space": {"max_batch_sizes": [1, 2, 4], "sharp_instances": [1]}},
        {"concurrency": [1, 2]},
        {"measurement": {"protocol": "http", "request_count": 16}},
    ],
)
def test_the_key_changes_with_everything_a_result_depends_on(changes: dict[str, Any]) -> None:
    assert cache_key(material(**changes)) != cache_key(material())


def test_the_gpu_runtime_only_counts_on_gpu_targets() -> None:
    assert cache_key(material(gpu_runtime="cuda")) == cache_key(material())
    gpu = {"target": "gpu"}
    assert cache_key(material(gpu_runtime="cuda", **gpu)) != cache_key(material(**gpu))


def test_entries_are_valid_for_seven_days_and_never_from_the_future(tmp_path: Path) -> None:
    cache = TuneCache(tmp_path)
    key = cache_key(material())
    cache.store(key, T0, {"winner": {"candidate": 1}})
    entry = cache.load(key)
    assert entry is not None and entry.document == {"winner": {"candidate": 1}}
    assert entry.tuned_at == T0 and entry.valid_until == T0 + timedelta(days=7)
    assert entry.is_valid(T0)
    assert entry.is_valid(T0 + timedelta(days=6, hours=23, minutes=59))
    assert not entry.is_valid(T0 + timedelta(days=7))
    assert not entry.is_valid(T0 - timedelta(minutes=1))  # a clock set back does not extend it


def test_missing_corrupt_or_foreign_entries_count_as_absent(tmp_path: Path) -> None:
    cache = TuneCache(tmp_path)
    assert cache.load("a" * 64) is None
    cache.path("b" * 64).write_text("{not json")
    assert cache.load("b" * 64) is None
    cache.path("c" * 64).write_text(json.dumps({"key": "d" * 64, "tuned_at": T0.isoformat(), "document": {}}))
    assert cache.load("c" * 64) is None


def test_cache_dir_follows_xdg(tmp_path: Path) -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "mlsharp" / "tune"
    assert default_cache_dir({}) == Path.home() / ".cache" / "mlsharp" / "tune"


def test_hardware_fingerprint_reads_cpu_memory_and_cores(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
    )
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24631600 kB\nMemFree:         1000 kB\n")
    assert hardware.cpu_model(cpuinfo) == "AMD EPYC 7B13"
    assert hardware.memory_gib(meminfo) == 23
    print_ = hardware.fingerprint()
    assert set(print_) == {"cpu_model", "logical_cores", "memory_gib", "gpus", "tritonserver"}
    assert print_["logical_cores"] >= 1 and print_["memory_gib"] >= 1
    assert hardware.fingerprint() == print_  # stable from one call to the next
