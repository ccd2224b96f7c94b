"""perf_analyzer plumbing shared by ``mlsharp tune`` and ``benchmarks/perf``: install, inputs, runs, stats.

Why in the package: the auto-tuner is a product feature of the installed ``mlsharp`` command, so the
measurement code it relies on cannot live in the (uninstalled) benchmarks tree.
"""
