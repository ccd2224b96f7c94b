"""``python -m gateway``: serve the gateway, or hash an API key for the settings file.

    python -m gateway serve [--config FILE] [--host H] [--port P] [--backend local|triton] ...
    python -m gateway hash-key KEY

Flags override ``MLSHARP_*`` environment variables, which override the config file, which
overrides the defaults. ``--set key=value`` reaches every other setting. An invalid value stops
start-up with a message naming the key (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from gateway.settings import Settings, SettingsError, load_settings

#: flag -> setting name; only flags actually given on the command line become overrides
_FLAGS: dict[str, str] = {
    "--host": "host",
    "--port": "port",
    "--backend": "backend",
    "--triton-url": "triton_url",
    "--results-dir": "results_dir",
    "--redis-url": "redis_url",
    "--log-level": "log_level",
    "--log-file": "log_file",
    "--preset": "local_preset",
    "--checkpoint": "local_checkpoint",
    "--device": "local_device",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the HTTP server (default)")
    serve.add_argument("--config", type=Path, help="YAML or JSON settings file")
    for flag, name in _FLAGS.items():
        serve.add_argument(flag, dest=name, default=None, help=f"setting {name}")
    serve.add_argument("--random-weights", dest="local_random_weights", action="store_const", const=True)
    serve.add_argument(
        "--set", dest="extra", action="append", default=[], metavar="KEY=VALUE", help="any other setting"
    )
    hash_key = commands.add_parser("hash-key", help="print the sha256 to store for an API key")
    hash_key.add_argument("key")
    return parser


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Only what the command line actually set, so lower layers keep their values."""
    overrides: dict[str, Any] = {}
    for name in [*_FLAGS.values(), "local_random_weights"]:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    for item in args.extra:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip().replace("-", "_")] = yaml.safe_load(raw) if raw else raw
    return overrides


def serve(settings: Settings) -> None:
    import uvicorn

    from gateway.app import create_app
    from gateway.logs import configure_logging

    configure_logging(settings)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        # uvicorn annotates int, but hands it to asyncio.wait_for: fractional seconds work
        timeout_graceful_shutdown=settings.shutdown_grace_s,  # type: ignore[arg-type]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "hash-key":
        from gateway.service.auth import hash_key

        print(hash_key(args.key))
        return 0
    if args.command is None:
        args = build_parser().parse_args(["serve", *(argv or [])])
    try:
        settings = load_settings(args.config, overrides_from(args))
    except SettingsError as error:
        print(f"gateway: {error}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
