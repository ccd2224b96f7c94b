"""Reports of the compose stage at the end of the run: its phases, image sizes and, after a
failure, where every container's log was saved."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    from tests.deploy import compose_stack as compose

    phases = config.stash.get(compose.PHASES_KEY, None)
    if phases is None:
        return
    for line in phases.lines():
        terminalreporter.write_line(line)
    for image, size in config.stash.get(compose.SIZES_KEY, {}).items():
        terminalreporter.write_line(f"  image {image:<40} {size / 2**20:8.0f} MiB")
    logs, failed = config.stash.get(compose.LOGS_KEY, (None, False))
    if logs is not None and failed:
        terminalreporter.write_line(f"compose stage failed: every container's log is in {logs}")
