"""``mlsharp tune``: measure candidate Triton configs of a real repository and apply the best one.

Modules: ``space`` (candidates), ``sweep`` (servers + perf_analyzer on scratch repositories),
``objective`` (choosing), ``hardware`` + ``cache`` (7-day result cache), ``apply`` (writing the
winner), ``report`` (the table), ``command`` (the CLI).
"""
