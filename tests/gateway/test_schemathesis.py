"""Property-based fuzzing of every operation in /openapi.json against a live server: no 5xx.

Bounded (a few examples per operation) to fit two cores. Webhooks are disabled here so that
generated URLs never trigger DNS look-ups; their validation is covered in test_hostile.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings

from gateway.app import create_app
from gateway.settings import Settings
from tests.gateway.support import FakeBackend
from tests.requires import require_module

schemathesis = require_module("schemathesis", "pip install -e .[test]")
from schemathesis.checks import not_a_server_error  # noqa: E402


class LiveServer:
    def __init__(self, settings: Settings) -> None:
        app = create_app(settings, backend=FakeBackend())
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings.model_validate(
        {
            "results_dir": tmp_path_factory.mktemp("fuzz") / "results",
            "webhooks_enabled": False,
            "upload_max_bytes": 1024 * 1024,
            "job_max_bytes": 4 * 1024 * 1024,
        }
    )
    server = LiveServer(settings)
    yield server
    server.stop()


def fuzz_operation(operation, base_url: str, calls: dict[str, int]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def fuzz(case) -> None:
        case.call_and_validate(base_url=base_url, checks=[not_a_server_error], timeout=30)
        calls[operation.label] = calls.get(operation.label, 0) + 1

    fuzz()


def test_no_server_errors(live: LiveServer) -> None:
    """Each operation gets a few generated requests; any 5xx fails with the offending case.

    Driven through hypothesis directly (schemathesis' pytest plugin does not support pytest 9).
    """
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    calls: dict[str, int] = {}
    for operation in operations:
        fuzz_operation(operation, live.url, calls)
    assert set(calls) == {operation.label for operation in operations}
