"""Tools around the mlsharp library: Triton tuning (`mlsharp tune`) and perf_analyzer runs.

Kept out of the core package because the served images never run them; the `mlsharp` CLI imports
them lazily, so they are only needed where the source checkout is installed.
"""
