"""Job rows become typed values in one place: decoded JSON columns, known states only."""

from __future__ import annotations

import json

import pytest

from gateway.api.schemas import job_status
from gateway.service.job_rows import JobFileRow, JobRow
from mlsharp.formats.metadata import parse_metadata

JOB = {
    "job_id": "j1", "owner": "alice", "state": "completed", "formats": '["ply", "spz"]',
    "focal_px": None, "focal_mm": 26, "created_at": 1.0, "updated_at": 2.0, "finished_at": 3.0,
    "expires_at": 4.0, "error": None, "base_url": "http://h", "version": 5,
}  # fmt: skip
FILE = {
    "job_id": "j1", "idx": 0, "filename": "a.png", "stem": "a", "state": "done", "error": None,
    "error_code": None, "processing_time": 0.5, "outputs": '{"ply": "00_a.ply"}',
}  # fmt: skip


def test_rows_decode_json_columns_and_render_the_api_shape() -> None:
    job = JobRow.from_row(JOB, (JobFileRow.from_row(FILE),))
    assert job.formats == ("ply", "spz") and job.focal_mm == 26.0 and job.terminal
    status = job_status(job, "http://h")
    assert status.state == "completed" and status.counts["done"] == 1 and status.progress == 1.0
    assert status.files[0].downloads == {"ply": "http://h/files/j1/00_a.ply"}
    assert status.archive_url == "http://h/v1/jobs/j1/archive"


def test_unknown_states_fail_where_the_row_is_read() -> None:
    with pytest.raises(ValueError, match="unknown state 'done'"):
        JobRow.from_row(JOB | {"state": "done"})
    with pytest.raises(ValueError, match="unknown state 'completed'"):
        JobFileRow.from_row(FILE | {"state": "completed"})


def test_parse_metadata_requires_the_declared_keys() -> None:
    with pytest.raises(ValueError, match=r"lacks .*model_id"):
        parse_metadata(json.dumps({"random_weights": True}))
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_metadata("[1]")
    assert parse_metadata('{"p": 1}', check_keys=False) == {"p": 1}
