"""`mlsharp` where mlsharp_tools is not installed (the served images): predict still parses and
`mlsharp tune` says what it needs instead of a traceback."""

from __future__ import annotations

import sys

import pytest

from mlsharp import cli


def test_tune_without_the_tools_package_says_what_it_needs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "mlsharp_tools.tuning.command", None)  # import fails as if absent
    assert cli.main(["tune", "--repository", "/nowhere", "--max-batch", "1"]) == 2
    err = capsys.readouterr().err
    assert "`mlsharp tune` needs the mlsharp_tools package" in err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", "--help"])
    assert exit_info.value.code == 0
