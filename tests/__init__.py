"""Test suite package: keeps tests/ itself off sys.path, so tests/triton never shadows a `triton` package (torch probes for one)."""
