"""MLSharp gateway: the FastAPI front door to SHARP inference (local or Triton).

Build an app with :func:`gateway.app.create_app`; run it with ``python -m gateway serve``.
"""

__version__ = "0.1.0"
