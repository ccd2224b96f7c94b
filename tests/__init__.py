"""Test suite package.

Being a package keeps tests/ itself off sys.path, so tests/triton never shadows the `triton`
package that torch probes for.
"""
