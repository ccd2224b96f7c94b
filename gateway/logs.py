"""Structured JSON logs carrying the request id, with size-based rotation when logging to a file."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

from gateway.ids import is_valid_id, short_hash
from gateway.settings import Settings

#: the id of the HTTP request (or job) being served, stamped on every log record
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


#: log fields that carry a task or job id, which is also the capability guarding /files
CAPABILITY_FIELDS = ("task_id", "job_id")
JOB_REQUEST_PREFIX = "job:"


def _hide_capability(value: object) -> object:
    """An id becomes ``~<short hash>``; anything else is left as it is."""
    return f"~{short_hash(value)}" if isinstance(value, str) and is_valid_id(value) else value


def _hide_job_request_id(value: str) -> str:
    """Job workers log under ``job:<job id>``; HTTP request ids (which clients see) stay as they are."""
    if value.startswith(JOB_REQUEST_PREFIX):
        return JOB_REQUEST_PREFIX + str(_hide_capability(value.removeprefix(JOB_REQUEST_PREFIX)))
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra={...}`` fields are kept as top-level keys. Task and job
    ids are logged as a short hash (enough to correlate lines, useless to download results)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": _hide_job_request_id(
                str(getattr(record, "request_id", None) or request_id_var.get())
            ),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        for key in CAPABILITY_FIELDS:
            if key in entry:
                entry[key] = _hide_capability(entry[key])
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: Settings) -> None:
    """Install the JSON handler on the root logger (process-wide; called by the CLI only)."""
    if settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            settings.log_file, maxBytes=settings.log_max_bytes, backupCount=settings.log_backups
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
