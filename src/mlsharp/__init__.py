"""MLSharp: serve Apple's SHARP (one photo -> 3D Gaussian splats) with Triton and FastAPI."""

__version__ = "0.1.0"
