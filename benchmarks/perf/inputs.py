"""Moved to :mod:`mlsharp.perf.inputs` (the auto-tuner needs it in the package).

Only a re-export, kept so that ``benchmarks.perf.inputs`` imports elsewhere in the tree keep working.
"""

from mlsharp.perf.inputs import (
    DEFAULT_PHOTOS,
    bytes_element,
    ensemble_data,
    fp32_element,
    generated_photos,
    load_photos,
    sharp_data,
    write_json,
)

__all__ = [
    "DEFAULT_PHOTOS",
    "bytes_element",
    "ensemble_data",
    "fp32_element",
    "generated_photos",
    "load_photos",
    "sharp_data",
    "write_json",
]
