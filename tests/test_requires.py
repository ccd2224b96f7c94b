"""A missing real component skips on a workstation and fails the run under CI=true."""

from __future__ import annotations

import pytest

from tests.requires import missing, require_executable, require_module

ABSENT = "mlsharp-no-such-tool-7f3a"


def test_missing_component_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"{ABSENT} is not installed"):
        require_executable(ABSENT)


@pytest.mark.parametrize(
    "call",
    [lambda: require_executable(ABSENT), lambda: require_module(ABSENT, "hint"), lambda: missing("codec")],
)
def test_missing_component_fails_under_ci(monkeypatch: pytest.MonkeyPatch, call) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and a real component is missing"):
        call()


def test_present_components_come_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert require_executable("sh").endswith("/sh")
    assert require_module("json", "stdlib").dumps([1]) == "[1]"
