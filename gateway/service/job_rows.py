"""Typed job and file rows: the one place where the database's ``jobs`` and ``job_files`` rows
(dicts of column -> value) become values the service, the API and the tests share.

Why: a state is a closed set of words that the page, the webhook events and the SQL all match
on. As a ``Literal`` a misspelt state is a type error, and a row holding a state this code does
not know fails here, loudly, instead of rendering as an unknown string further on. The JSON
columns (``formats``, ``outputs``) are decoded here once, never by each reader.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

JobState = Literal["queued", "running", "completed", "partial", "failed", "cancelled"]
FileState = Literal["pending", "running", "done", "failed", "cancelled"]
#: what a running file is doing: making its scene, then (``render=true``) its still and video
FileStage = Literal["inference", "render"]

ACTIVE: tuple[JobState, ...] = ("queued", "running")
TERMINAL: tuple[JobState, ...] = ("completed", "partial", "failed", "cancelled")
FILE_STATES: tuple[FileState, ...] = get_args(FileState)
FILE_STAGES: tuple[FileStage, ...] = get_args(FileStage)

_S = TypeVar("_S", bound=str)


def _state(value: Any, allowed: tuple[_S, ...], table: str) -> _S:
    """``value`` as one of ``allowed``; any other word is a row this code cannot interpret."""
    for state in allowed:
        if value == state:
            return state
    raise ValueError(f"{table} row has unknown state {value!r} (expected one of {', '.join(allowed)})")


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class JobFileRow:
    """One photo of a job: its place in the batch, progress and the names of its results."""

    job_id: str
    idx: int
    filename: str
    stem: str
    state: FileState
    error: str | None
    error_code: str | None
    processing_time: float | None
    #: format (and ``metadata``, ``preview``, ``orbit``) -> file name under the job's downloads
    outputs: dict[str, str]
    stage: FileStage | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobFileRow:
        return cls(
            job_id=str(row["job_id"]),
            idx=int(row["idx"]),
            filename=str(row["filename"]),
            stem=str(row["stem"]),
            state=_state(row["state"], FILE_STATES, "job_files"),
            error=row["error"],
            error_code=row.get("error_code"),
            processing_time=_opt_float(row["processing_time"]),
            outputs=dict(json.loads(row["outputs"] or "{}")),
            stage=None if row.get("stage") is None else _state(row["stage"], FILE_STAGES, "job_files"),
        )


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job as stored, with its files when they were read (``JobService.get``)."""

    job_id: str
    owner: str
    state: JobState
    formats: tuple[str, ...]
    focal_px: float | None
    focal_mm: float | None
    created_at: float
    updated_at: float
    finished_at: float | None
    expires_at: float | None
    error: str | None
    base_url: str
    #: bumped by every change a watcher should see (the SSE event id)
    version: int
    #: each photo also gets a still and an orbit video
    render: bool = False
    files: tuple[JobFileRow, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @classmethod
    def from_row(cls, row: Mapping[str, Any], files: tuple[JobFileRow, ...] = ()) -> JobRow:
        return cls(
            job_id=str(row["job_id"]),
            owner=str(row["owner"]),
            state=_state(row["state"], ACTIVE + TERMINAL, "jobs"),
            formats=tuple(json.loads(row["formats"])),
            focal_px=_opt_float(row["focal_px"]),
            focal_mm=_opt_float(row["focal_mm"]),
            created_at=float(row["created_at"]),
            updated_at=float(row["updated_at"]),
            finished_at=_opt_float(row["finished_at"]),
            expires_at=_opt_float(row["expires_at"]),
            error=row["error"],
            base_url=str(row["base_url"]),
            version=int(row["version"]),
            render=bool(row.get("render") or 0),
            files=files,
        )
