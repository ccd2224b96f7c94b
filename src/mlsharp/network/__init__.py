"""Clean-room SHARP network (architecture.md); see `SharpPredictor`."""

from mlsharp.network.predictor import RAW_OUTPUT_NAMES, SharpPredictor

__all__ = ["RAW_OUTPUT_NAMES", "SharpPredictor"]
