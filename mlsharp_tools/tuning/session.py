"""One ``mlsharp tune`` run: options -> candidates -> cache check -> sweep -> choose -> apply.

Why this order: everything that can be refused (missing repository.json, fp16 on CPU, an empty
space) is refused before a server starts; a valid cached result is applied without measuring; and
the real repository is written only after a winner exists, so an interrupted or failed sweep
leaves it exactly as it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mlsharp.triton.models import MODEL_NAMES, RepositoryOptions
from mlsharp.triton.repository import load_options
from mlsharp_tools.perf import inputs
from mlsharp_tools.tuning import hardware
from mlsharp_tools.tuning.apply import TUNING_FILE, apply_winner, tuned_fields, with_fields
from mlsharp_tools.tuning.cache import (
    VALIDITY,
    CacheEntry,
    TuneCache,
    cache_key,
    default_cache_dir,
    key_material,
)
from mlsharp_tools.tuning.command import Echo, TuneRequest, photos_digest, utc_now
from mlsharp_tools.tuning.objective import Point, select
from mlsharp_tools.tuning.report import label, table
from mlsharp_tools.tuning.space import Candidate, TuneError, check_precisions, expand, space_from_lists
from mlsharp_tools.tuning.sweep import MeasureFn, SweepResult, SweepSettings, sweep

DOCUMENT_SCHEMA = 1


@dataclass
class TuneOutcome:
    """What a run did: the options now in the repository and the tuning document written."""

    options: RepositoryOptions
    document: dict[str, Any]
    from_cache: bool
    cache_path: Path


def check_limits(request: TuneRequest) -> None:
    """Limits that would otherwise surface as a confusing empty result or a perf_analyzer error."""
    if request.max_candidates is not None and request.max_candidates < 1:
        raise TuneError("--max-candidates must be >= 1")
    if request.time_budget_s is not None and request.time_budget_s <= 0:
        raise TuneError("--time-budget-s must be > 0")
    run = request.run
    if run.request_count < 0 or (run.request_count == 0 and run.measurement_interval_ms <= 0):
        raise TuneError("--request-count must be >= 1 (or 0 with a positive --measurement-interval-ms)")
    if run.max_trials < 1:
        raise TuneError("--max-trials must be >= 1")


def check_writable(repository: Path, scratch_parent: Path) -> None:
    """Refuse before measuring when the winner could not be written or no scratch space exists."""
    for path in (repository, *(repository / name for name in MODEL_NAMES)):
        if not os.access(path, os.W_OK):
            raise TuneError(f"cannot write {path}: the result could not be applied (nothing was measured)")
    if not os.access(scratch_parent, os.W_OK):
        raise TuneError(
            f"cannot create candidate repositories in {scratch_parent}; pass --scratch-dir DIR on the "
            "repository's filesystem (model files are hard-linked there, not copied)"
        )


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _candidate_records(
    candidates: list[Candidate], result: SweepResult | None, skipped: dict[int, str]
) -> list[dict[str, Any]]:
    runs = {run.candidate.index: run for run in (result.runs if result else [])}
    records = []
    for cand in candidates:
        run = runs.get(cand.index)
        status = "skipped" if cand.index in skipped else ("failed" if run and run.error else "measured")
        records.append(
            {
                "index": cand.index,
                "label": label(cand.options),
                "fields": tuned_fields(cand.options),
                "concurrency": list(cand.concurrency),
                "status": status,
                "error": run.error if run else None,
                "skip_reason": skipped.get(cand.index),
                "log_dir": str(run.log_dir) if run and run.log_dir else None,
                "seconds": round(run.seconds, 1) if run else None,
            }
        )
    return records


def _apply_cached(
    request: TuneRequest,
    opts: RepositoryOptions,
    entry: CacheEntry,
    cache: TuneCache,
    now: datetime,
    echo: Echo,
) -> TuneOutcome:
    document = dict(entry.document)
    winner = document["winner"]
    new_opts = with_fields(opts, winner["fields"])
    document.update(
        repository=str(request.repository),
        applied_at=now.isoformat(),
        from_cache=True,
        previous_fields=tuned_fields(opts),
    )
    echo(
        f"cached result (key {entry.key[:12]}): tuned {_when(entry.tuned_at)}, valid until "
        f"{_when(entry.valid_until)}; applied without measuring (--force re-measures)."
    )
    echo(table(document["candidates"], document["points"], winner, document["objective"]["p95_bound_ms"]))
    apply_winner(request.repository, new_opts, document)
    echo(
        f"applied: {label(new_opts)}\n"
        f"wrote the configs, repository.json and {TUNING_FILE} in {request.repository}"
    )
    return TuneOutcome(new_opts, document, True, cache.path(entry.key))


def tune(
    request: TuneRequest,
    *,
    now: Callable[[], datetime] = utc_now,
    measure: MeasureFn | None = None,
    echo: Echo = print,
) -> TuneOutcome:
    """Tune ``request.repository`` in place (see the module docstring); raises TuneError subclasses."""
    check_limits(request)
    repository = request.repository
    opts = load_options(repository)
    check_writable(repository, request.scratch_dir or repository.parent)
    space = space_from_lists(opts, **request.lists)
    check_precisions(opts, space, repository)
    candidates, notes = expand(opts, space, request.concurrency)
    photos = inputs.load_photos(request.photos) if request.photos else inputs.generated_photos()
    run_settings = request.run
    measurement = {
        "model": "mlsharp",
        "protocol": request.protocol,
        "request_count": run_settings.request_count,
        "measurement_interval_ms": run_settings.measurement_interval_ms
        if not run_settings.request_count
        else None,
        "max_trials": run_settings.max_trials,
        "stability_percentage": run_settings.stability_percentage,
        "photos_sha256": photos_digest(photos),
        "max_candidates": request.max_candidates,
        "time_budget_s": request.time_budget_s,
    }
    fingerprint = hardware.fingerprint()
    material = key_material(
        hardware=fingerprint,
        model_id=opts.model_id,
        preset=opts.preset,
        target=opts.target,
        gpu_runtime=opts.gpu_runtime,
        objective=request.objective.to_json(),
        space=space.to_json(),
        concurrency=list(request.concurrency) if request.concurrency else None,
        measurement=measurement,
    )
    key = cache_key(material)
    cache = TuneCache(request.cache_dir or default_cache_dir())
    started = now()
    entry = cache.load(key)
    if entry is not None and entry.is_valid(started):
        if not request.force:
            return _apply_cached(request, opts, entry, cache, started, echo)
        echo(f"--force: ignoring the cached result from {_when(entry.tuned_at)}; measuring again")
    elif entry is not None:
        echo(
            f"the cached result from {_when(entry.tuned_at)} is older than {VALIDITY.days} days; "
            "measuring again"
        )

    from mlsharp_tools.perf.tool import DEFAULT_TOOLS, PerfAnalyzer

    tool = PerfAnalyzer(request.tools_dir or DEFAULT_TOOLS).ensure()
    log_dir = (
        request.work_dir or cache.directory / "runs" / f"{started:%Y%m%dT%H%M%SZ}-{key[:12]}"
    ).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    input_data = inputs.write_json(inputs.ensemble_data(photos), log_dir / "input_mlsharp.json")
    echo(
        f"tuning {repository} ({opts.preset}, {opts.target}, model {opts.model_id}): {len(candidates)} "
        f"candidate(s), objective: {request.objective.describe()}\nlogs: {log_dir}"
    )
    for note in notes:
        echo(f"note: {note}")
    settings = SweepSettings(
        run=run_settings,
        protocol=request.protocol,
        max_candidates=request.max_candidates,
        time_budget_s=request.time_budget_s,
        startup_timeout_s=request.startup_timeout_s,
        scratch_parent=request.scratch_dir,
    )
    result = sweep(
        repository,
        candidates,
        settings,
        tool=tool,
        input_data=input_data,
        log_dir=log_dir,
        measure=measure,
        echo=echo,
    )
    skipped = {cand.index: reason for cand, reason in result.skipped}
    for cand, reason in result.skipped:
        echo(f"skipped candidate {cand.index} ({label(cand.options)}): {reason}")
    records = _candidate_records(candidates, result, skipped)
    points = [p.to_json() for p in result.points]
    by_index = {c.index: c for c in candidates}
    try:
        winner_point = select(result.points, by_index, request.objective)
    except TuneError:
        if points:
            echo(table(records, points, None, request.objective.p95_bound_ms))
        raise
    winner_opts = with_fields(opts, by_index[winner_point.candidate].fields())
    tuned_at = now()
    document: dict[str, Any] = {
        "schema": DOCUMENT_SCHEMA,
        "tool": "mlsharp tune",
        "tuned_at": tuned_at.isoformat(),
        "valid_until": (tuned_at + VALIDITY).isoformat(),
        "applied_at": tuned_at.isoformat(),
        "from_cache": False,
        "repository": str(repository),
        "model_id": opts.model_id,
        "preset": opts.preset,
        "target": opts.target,
        "random_weights": opts.random_weights,
        "objective": request.objective.to_json(),
        "hardware": fingerprint,
        "tritonserver_version": result.server_version,
        "cache_key": key,
        "search_space": space.to_json(),
        "concurrency": list(request.concurrency) if request.concurrency else "derived",
        "measurement": measurement,
        "notes": notes,
        "log_dir": str(log_dir),
        "candidates": records,
        "points": points,
        "winner": _winner_record(winner_point, by_index[winner_point.candidate]),
        "previous_fields": tuned_fields(opts),
    }
    echo(table(records, points, document["winner"], request.objective.p95_bound_ms))
    before = [r["index"] for r in records if r["fields"] == document["previous_fields"]]
    if before:
        echo(f"candidate {before[0]} is the repository's configuration before tuning")
    apply_winner(repository, winner_opts, document)
    cache_path = cache.store(key, tuned_at, document)
    best = winner_point
    echo(
        f"winner: candidate {best.candidate} ({label(winner_opts)}), best at concurrency "
        f"{best.concurrency}: {best.throughput_infer_s:.3f} infer/s, p95 {best.p95_ms:.1f} ms\n"
        f"wrote the configs, repository.json and {TUNING_FILE} in {repository}; "
        "restart Triton to serve them\n"
        f"cached until {_when(tuned_at + VALIDITY)}: {cache_path}"
    )
    return TuneOutcome(winner_opts, document, False, cache_path)


def _winner_record(point: Point, candidate: Candidate) -> dict[str, Any]:
    return point.to_json() | {"fields": candidate.fields(), "label": label(candidate.options)}
