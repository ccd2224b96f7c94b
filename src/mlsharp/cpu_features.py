"""What this CPU can do fast, read from ``/proc/cpuinfo``, so the CPU target's runtime follows it.

Why: the same network runs ~7x faster in bf16 on a Xeon with AMX than in fp32, and somewhat faster
on AVX-512 BF16 without AMX (Zen 4), while a CPU without native bf16 would emulate it slowly. The
export (``--precision auto``) and the study (``benchmarks.cpu_precision``) decide and report from
these flags; they never guess from the model name.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

#: the flags that matter for the network's matrix products on CPU, in the order they are printed
RELEVANT_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f")


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's model name and its instruction-set flags."""

    model_name: str
    flags: frozenset[str]

    @property
    def native_bf16(self) -> bool:
        """bf16 matrix products in hardware: AMX tiles or AVX-512 BF16 dot products."""
        return "amx_bf16" in self.flags or "avx512_bf16" in self.flags

    @property
    def amx(self) -> bool:
        return "amx_bf16" in self.flags

    def relevant_flags(self) -> list[str]:
        """The flags of :data:`RELEVANT_FLAGS` this CPU has."""
        return [flag for flag in RELEVANT_FLAGS if flag in self.flags]

    def summary(self) -> str:
        """One line for reports: model name and the relevant flags."""
        return f"{self.model_name} [{' '.join(self.relevant_flags()) or 'no AVX-512/AMX'}]"


def read_cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuFeatures:
    """The first processor's ``model name`` and ``flags`` (empty where cpuinfo cannot be read)."""
    name, flags = "unknown CPU", frozenset[str]()
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "model name" and name == "unknown CPU":
                name = value.strip()
            elif key == "flags" and not flags:
                flags = frozenset(value.split())
    return CpuFeatures(name, flags)
