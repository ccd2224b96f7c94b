"""Settings precedence (defaults < file < env < CLI) and start-up errors that name the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.__main__ import build_parser, overrides_from
from gateway.settings import Settings, SettingsError, load_settings


def test_defaults_are_local_and_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLSHARP_PORT", "MLSHARP_BACKEND", "MLSHARP_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.backend, settings.port, settings.host) == ("local", 8080, "127.0.0.1")
    assert settings.redis_url is None and settings.auth_enabled is False
    assert settings.upload_max_bytes == 50 * 1024 * 1024
    assert settings.database_path == Path("var/results/gateway.sqlite3")


def test_precedence_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("port: 9000\nhost: 0.0.0.0\nlog_level: debug\nmax_queue: 3\nno_cache: true\n")
    assert load_settings(config).port == 9000
    monkeypatch.setenv("MLSHARP_PORT", "9100")
    monkeypatch.setenv("MLSHARP_MAX_QUEUE", "4")
    settings = load_settings(config)
    assert (settings.port, settings.max_queue, settings.host, settings.log_level) == (
        9100,
        4,
        "0.0.0.0",
        "DEBUG",
    )
    assert settings.cache_enabled is False  # no_cache, a key older config files still carry
    cli = overrides_from(build_parser().parse_args(["serve", "--port", "9200", "--set", "max_queue=5"]))
    assert cli == {"port": "9200", "max_queue": 5}
    settings = load_settings(config, cli)
    assert (settings.port, settings.max_queue, settings.host) == (9200, 5, "0.0.0.0")


def test_json_config_and_list_values_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({"webhook_allow_hosts": ["127.0.0.1"], "max_file_size": 1234567}))
    monkeypatch.setenv("MLSHARP_CORS_ALLOW_ORIGINS", '["https://app.example"]')
    settings = load_settings(config)
    assert settings.webhook_allow_hosts == ("127.0.0.1",)
    assert settings.upload_max_bytes == 1234567  # seed alias
    assert settings.cors_allow_origins == ("https://app.example",)


@pytest.mark.parametrize(
    ("layer", "key", "value", "message"),
    [
        ("file", "port", "70000", "invalid setting 'port' (env MLSHARP_PORT)"),
        ("env", "port", "eighty", "invalid setting 'port' (env MLSHARP_PORT)"),
        ("cli", "backend", "gpu", "invalid setting 'backend'"),
        ("file", "max_in_flight", "0", "invalid setting 'max_in_flight'"),
        ("file", "colour", "blue", "unknown setting 'colour'"),
        ("cli", "formats_default", ["obj"], "unknown output format(s) ['obj']"),
        ("file", "webhook_allow_hosts", '["bad host!"]', "neither a host name"),
        ("env", "api_keys", '[{"name": "a", "sha256": "short"}]', "invalid setting 'api_keys.0.sha256'"),
    ],
)
def test_invalid_values_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layer: str, key: str, value, message: str
) -> None:
    config = None
    overrides = {}
    if layer == "file":
        config = tmp_path / "c.yaml"
        config.write_text(f"{key}: {value}\n")
    elif layer == "env":
        monkeypatch.setenv(f"MLSHARP_{key.upper()}", value)
    else:
        overrides = {key: value}
    with pytest.raises(SettingsError) as error:
        load_settings(config, overrides)
    assert message in str(error.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("port: [1,\n")
    with pytest.raises(SettingsError, match="not valid YAML/JSON"):
        load_settings(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(SettingsError, match="must hold a mapping"):
        load_settings(listing)


def test_cli_refuses_to_start_with_a_bad_value(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.__main__ import main

    assert main(["serve", "--port", "0"]) == 2
    stderr = capsys.readouterr().err
    assert "invalid setting 'port'" in stderr
    assert "greater than or equal to 1" in stderr


def test_hash_key_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "hash-key", "abc"], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_settings_model_is_strict() -> None:
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        Settings.model_validate({"nope": 1})


def test_empty_optional_urls_mean_unset(monkeypatch) -> None:
    """Compose passes ``MLSHARP_DATABASE_URL=`` when .env leaves it empty: the embedded defaults."""
    from gateway.settings import load_settings

    for name in (
        "DATABASE_URL",
        "OBJECT_STORE_URL",
        "S3_ENDPOINT_URL",
        "LIMITS_REDIS_URL",
        "WEBHOOK_SECRET_KEY",
    ):
        monkeypatch.setenv(f"MLSHARP_{name}", "")
    settings = load_settings()
    assert settings.database_url is None and settings.object_store_url is None
    assert settings.limits_redis_url is None and settings.webhook_secret_key is None
