"""Export SharpPredictor to ONNX/TorchScript with numeric checks, and write the Triton repository.

Run ``python -m export --help``. The pieces: :mod:`export.graphs` (tracing), :mod:`export.verify`
(numerics against eager PyTorch), :mod:`export.repository` (Triton layout), :mod:`export.manifest`.
"""
