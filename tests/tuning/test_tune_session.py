"""``tune`` end to end with a stand-in server and perf_analyzer: cache, failures, limits, messages.

Why stand-ins here: these cases (a crash mid-sweep, a server that cannot start, an unstable window,
the 7-day boundary) cannot be provoked on demand from a real server, and they must run in
seconds. The real server and the real perf_analyzer are exercised in test_tune_functional.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mlsharp import cli
from mlsharp.sample_image import photo_like_jpeg
from mlsharp.triton.models import RepositoryOptions
from mlsharp.triton.repository import load_options
from mlsharp.triton.server import TritonStartError
from mlsharp_tools.perf.run import Measurement, PerfRunError, RunSettings
from mlsharp_tools.perf.stats import StageStats
from mlsharp_tools.perf.tool import PerfAnalyzer
from mlsharp_tools.tuning import hardware
from mlsharp_tools.tuning import sweep as sweep_mod
from mlsharp_tools.tuning.command import TuneRequest
from mlsharp_tools.tuning.objective import BoundNotMetError, Objective
from mlsharp_tools.tuning.session import tune
from mlsharp_tools.tuning.space import expand, space_from_lists
from mlsharp_tools.tuning.sweep import SweepAbortedError, SweepSettings
from tests.conftest import repository_options as options
from tests.tuning.tune_helpers import snapshot, stub_repository

T0 = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


class FakeServer:
    """Stands in for TritonServer: checks the scratch repository it is given, serves nothing."""

    started: ClassVar[list[RepositoryOptions]] = []
    stopped: ClassVar[int] = 0
    fail_start: ClassVar[bool] = False

    def __init__(self, repository: Path, *, log_path: Path, startup_timeout_s: float) -> None:
        self.repository, self.log_path = Path(repository), Path(log_path)
        self.http_url, self.grpc_url = "127.0.0.1:9", "127.0.0.1:9"

    def start(self) -> FakeServer:
        assert self.repository.name.startswith(".model_repository-tune-")
        model = self.repository / "sharp" / "1" / "model.onnx"
        assert model.stat().st_nlink >= 2 or model.is_symlink(), "model files are linked, not copied"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text("server log\n")
        if FakeServer.fail_start:
            raise TritonStartError("tritonserver cannot load a model (failed to load 'sharp'):\nboom")
        FakeServer.started.append(load_options(self.repository))
        return self

    def stop(self) -> int:
        FakeServer.stopped += 1
        return 0

    def kill(self) -> int:  # the sweep kills its scratch servers (nothing in flight to drain)
        return self.stop()


def fake_measure(tool: Any, *, concurrency: int, model: str, protocol: str, **_: Any) -> Measurement:
    """More batch room and instances help up to the concurrency; latency grows with concurrency."""
    opts = FakeServer.started[-1]
    capacity = opts.max_batch_size * opts.sharp_instances
    throughput = 2.0 * min(concurrency, capacity)
    p95_ms = 400.0 * concurrency / min(concurrency, capacity)
    sharp = StageStats("sharp", 6, 3, {}, {min(concurrency, opts.max_batch_size): 3})
    return Measurement(
        model, protocol, concurrency, throughput, p95_ms * 0.8, p95_ms, p95_ms * 1.1, p95_ms, [sharp]
    )


@pytest.fixture(autouse=True)
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    FakeServer.started, FakeServer.stopped, FakeServer.fail_start = [], 0, False
    monkeypatch.setattr(sweep_mod, "TritonServer", FakeServer)
    monkeypatch.setattr(sweep_mod, "server_version", lambda url: "2.51.0")
    monkeypatch.setattr(PerfAnalyzer, "ensure", lambda self: self)
    monkeypatch.setattr(hardware, "fingerprint", lambda: {"cpu_model": "test cpu", "logical_cores": 2})
    yield


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return stub_repository(tmp_path / "export", options(max_batch_size=8))


def request(repo: Path, tmp_path: Path, **changes: Any) -> TuneRequest:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_like_jpeg(64, 48))
    values: dict[str, Any] = {
        "repository": repo,
        "lists": {"max_batch_sizes": (1, 2), "queue_delays_us": (0,), "sharp_instances": (1,)},
        "objective": Objective(),
        "concurrency": (1, 2),
        "run": RunSettings(request_count=2),
        "photos": [photo],
        "cache_dir": tmp_path / "cache",
    }
    return TuneRequest(**(values | changes))


class Counter:
    def __init__(self, fail_at: int | None = None, error: BaseException | None = None) -> None:
        self.calls: list[int] = []
        self.fail_at, self.error = fail_at, error

    def __call__(self, tool: Any, **kwargs: Any) -> Measurement:
        self.calls.append(kwargs["concurrency"])
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            assert self.error is not None
            raise self.error
        return fake_measure(tool, **kwargs)


def test_measures_applies_caches_and_reuses_the_result_for_seven_days(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    measure = Counter()
    outcome = tune(request(repo, tmp_path), now=lambda: T0, measure=measure)
    assert measure.calls == [1, 2, 1, 2] and not outcome.from_cache
    assert [o.max_batch_size for o in FakeServer.started] == [1, 2] and FakeServer.stopped == 2
    assert outcome.options.max_batch_size == 2  # 4 infer/s at concurrency 2 beats 2 infer/s
    assert load_options(repo) == outcome.options
    doc = outcome.document
    assert doc["winner"]["candidate"] == 2 and doc["winner"]["concurrency"] == 2
    assert len(doc["points"]) == 4 and doc["points"][3]["sharp_batches"] == {"2": 3}
    assert doc["previous_fields"]["max_batch_size"] == 8 and doc["tritonserver_version"] == "2.51.0"
    assert not list(repo.parent.glob(".model_repository-tune-*")), "scratch repositories removed"
    out = capsys.readouterr().out
    assert "winner: candidate 2" in out and "sharp batches" in out

    second = Counter()
    cached = tune(request(repo, tmp_path), now=lambda: T0 + timedelta(days=6, hours=23), measure=second)
    assert cached.from_cache and second.calls == [] and len(FakeServer.started) == 2
    assert cached.options == outcome.options
    out = capsys.readouterr().out
    assert "tuned 2026-11-28 08:00 UTC, valid until 2026-12-05 08:00 UTC" in out and "--force" in out

    third = Counter()
    tune(request(repo, tmp_path), now=lambda: T0 + timedelta(days=7), measure=third)
    assert third.calls == [1, 2, 1, 2] and "older than 7 days" in capsys.readouterr().out

    forced = Counter()
    tune(request(repo, tmp_path, force=True), now=lambda: T0 + timedelta(days=7, hours=1), measure=forced)
    assert forced.calls == [1, 2, 1, 2] and "--force: ignoring" in capsys.readouterr().out


def test_a_different_question_is_a_different_cache_entry(repo: Path, tmp_path: Path) -> None:
    tune(request(repo, tmp_path), now=lambda: T0, measure=Counter())
    latency = Counter()
    req = request(repo, tmp_path, objective=Objective("latency", p95_bound_ms=500))
    outcome = tune(req, now=lambda: T0, measure=latency)
    assert latency.calls and not outcome.from_cache
    assert outcome.document["winner"]["p95_ms"] <= 500


def test_an_unmet_bound_writes_nothing(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(repo)
    with pytest.raises(BoundNotMetError, match=r"best p95 seen was 400\.0 ms"):
        req = request(repo, tmp_path, objective=Objective("latency", p95_bound_ms=50))
        tune(req, now=lambda: T0, measure=Counter())
    assert snapshot(repo) == before
    assert not list((tmp_path / "cache").glob("*.json")), "nothing cached"
    assert "! p95 over the bound" in capsys.readouterr().out  # the table of what was measured


def test_an_interrupted_sweep_leaves_the_repository_untouched(repo: Path, tmp_path: Path) -> None:
    before = snapshot(repo)
    with pytest.raises(KeyboardInterrupt):
        tune(request(repo, tmp_path), now=lambda: T0, measure=Counter(fail_at=3, error=KeyboardInterrupt()))
    assert snapshot(repo) == before
    assert FakeServer.stopped == 2, "the running server was stopped"
    assert not list(repo.parent.glob(".model_repository-tune-*"))


def test_candidates_beyond_max_candidates_are_reported_as_skipped(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = tune(request(repo, tmp_path, max_candidates=1), now=lambda: T0, measure=Counter())
    records = outcome.document["candidates"]
    assert [r["status"] for r in records] == ["measured", "skipped"]
    assert records[1]["skip_reason"] == "beyond --max-candidates 1"
    assert "skipped candidate 2 (max_batch 2" in capsys.readouterr().out


def test_the_time_budget_skips_candidates_that_would_overrun(repo: Path, tmp_path: Path) -> None:
    base = options()
    candidates, _ = expand(
        base,
        space_from_lists(base, max_batch_sizes=(1, 2, 4), queue_delays_us=(0,), sharp_instances=(1,)),
        [1],
    )
    clock = [0.0]

    def slow(tool: Any, **kwargs: Any) -> Measurement:
        clock[0] += 100.0  # every candidate takes 100 s
        return fake_measure(tool, **kwargs)

    settings = SweepSettings(RunSettings(request_count=2), time_budget_s=250)
    result = sweep_mod.sweep(
        repo, candidates, settings, tool=PerfAnalyzer(), input_data=tmp_path / "in.json",
        log_dir=tmp_path / "logs", measure=slow, echo=lambda _: None, clock=lambda: clock[0],
    )  # fmt: skip
    assert [r.candidate.index for r in result.runs] == [1, 2]
    ((skipped, reason),) = result.skipped
    assert skipped.index == 3 and reason == "time budget: 200 s used, a candidate takes ~100 s, budget 250 s"


def test_server_and_perf_failures_name_their_logs(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeServer.fail_start = True
    log_dir = tmp_path / "logs"
    with pytest.raises(SweepAbortedError) as info:
        tune(request(repo, tmp_path, work_dir=log_dir), now=lambda: T0)
    server_log = log_dir / "candidate-01" / "tritonserver.log"
    assert f"tritonserver did not start (log: {server_log})" in str(info.value)
    assert "failed to load 'sharp'" in str(info.value)
    argv = ["tune", "--repository", str(repo), "--max-batch", "1,2", "--queue-delay-us", "0"]
    argv += ["--sharp-instances", "1", "--cache-dir", str(tmp_path / "cache")]
    assert cli.main(argv) == 1
    assert "the first two candidates both failed" in capsys.readouterr().err

    FakeServer.fail_start = False

    def broken(tool: Any, **kwargs: Any) -> Measurement:
        raise PerfRunError("perf_analyzer failed (99): ...\nerror: connection refused")

    with pytest.raises(SweepAbortedError) as info:
        tune(request(repo, tmp_path, work_dir=log_dir), now=lambda: T0, measure=broken)
    perf_log = log_dir / "candidate-01" / "perf" / "mlsharp_grpc_c1.log"
    assert f"perf_analyzer failed at concurrency 1 (log: {perf_log}" in str(info.value)


def test_one_failed_candidate_does_not_stop_the_others(repo: Path, tmp_path: Path) -> None:
    measure = Counter(fail_at=1, error=PerfRunError("perf_analyzer failed (1)"))
    outcome = tune(request(repo, tmp_path), now=lambda: T0, measure=measure)
    statuses = [(r["status"], bool(r["error"])) for r in outcome.document["candidates"]]
    assert statuses == [("failed", True), ("measured", False)]
    assert outcome.options.max_batch_size == 2


def test_an_unstable_level_is_measured_once_more_and_marked(repo: Path, tmp_path: Path) -> None:
    seen: list[int] = []

    def unstable_first(tool: Any, **kwargs: Any) -> Measurement:
        seen.append(kwargs["settings"].stability_percentage)
        if kwargs["settings"].stability_percentage < 999:
            raise PerfRunError("Failed to obtain stable measurement within 5 measurement windows")
        return fake_measure(tool, **kwargs)

    req = request(
        repo, tmp_path, lists={"max_batch_sizes": (2,), "queue_delays_us": (0,), "sharp_instances": (1,)}
    )
    outcome = tune(req, now=lambda: T0, measure=unstable_first)
    assert seen == [20, 999, 20, 999]
    assert [p["stable"] for p in outcome.document["points"]] == [False, False]


def test_cli_refuses_a_repository_without_repository_json(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "repository.json").unlink()
    assert cli.main(["tune", "--repository", str(repo)]) == 2
    err = capsys.readouterr().err
    assert "has no repository.json" in err and "Re-export it" in err


def test_cli_refuses_fp16_on_cpu_and_a_latency_objective_without_bound(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["tune", "--repository", str(repo), "--precision", "fp32,fp16"]) == 2
    assert "--precision fp16 needs a GPU repository" in capsys.readouterr().err
    assert cli.main(["tune", "--repository", str(repo), "--objective", "latency"]) == 2
    assert "needs --p95-ms" in capsys.readouterr().err
    assert FakeServer.started == []


def test_the_table_says_which_candidate_was_the_configuration_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = stub_repository(tmp_path / "export", options(max_batch_size=2, max_queue_delay_us=0))
    tune(request(repo, tmp_path), now=lambda: T0, measure=Counter())
    assert "candidate 2 is the repository's configuration before tuning" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-candidates", "0"], "--max-candidates must be >= 1"),
        (["--time-budget-s", "0"], "--time-budget-s must be > 0"),
        (["--request-count", "-1"], "--request-count must be >= 1"),
        (["--preferred", "some"], "none of none, max, pow2"),
    ],
)
def test_cli_refuses_meaningless_limits(
    repo: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) if flags[0] == "--preferred" else contextlib.nullcontext():
        assert cli.main(["tune", "--repository", str(repo), *flags]) == 2
    assert message in capsys.readouterr().err
