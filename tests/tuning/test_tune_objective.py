"""Choosing the winner: throughput, p95 under a bound, tie-break toward fewer resources."""

from __future__ import annotations

import pytest

from mlsharp_tools.tuning.objective import BoundNotMetError, Objective, Point, select
from mlsharp_tools.tuning.space import Candidate, TuneError
from tests.conftest import repository_options as options

CANDIDATES = {
    1: Candidate(1, options(max_batch_size=1, sharp_instances=1, max_queue_delay_us=0), (1, 2)),
    2: Candidate(2, options(max_batch_size=4, sharp_instances=1, max_queue_delay_us=0), (1, 4, 8)),
    3: Candidate(3, options(max_batch_size=4, sharp_instances=2, max_queue_delay_us=0), (1, 8, 16)),
    4: Candidate(4, options(max_batch_size=4, sharp_instances=1, max_queue_delay_us=20_000), (1, 4, 8)),
}


def point(candidate: int, concurrency: int, throughput: float, p95_ms: float) -> Point:
    return Point(candidate, concurrency, throughput, p95_ms * 0.8, p95_ms, p95_ms * 1.1, {1: 3})


def test_throughput_picks_the_highest() -> None:
    points = [point(1, 1, 2.0, 500), point(2, 4, 3.0, 1400), point(3, 8, 3.6, 2300), point(4, 8, 3.2, 2500)]
    assert select(points, CANDIDATES, Objective("throughput")) == points[2]


def test_exact_ties_go_to_smaller_batch_then_fewer_instances_then_smaller_delay() -> None:
    exact = Objective("throughput", tie_percent=0)
    tied = [point(3, 8, 3.0, 900), point(4, 4, 3.0, 900), point(2, 4, 3.0, 900), point(1, 2, 3.0, 900)]
    assert select(tied, CANDIDATES, exact).candidate == 1  # batch 1 beats batch 4
    assert select(tied[:3], CANDIDATES, exact).candidate == 2  # same batch: 1 instance, no delay
    assert select(tied[:2], CANDIDATES, exact).candidate == 4  # 1 instance beats 2, delay second
    same_candidate = [point(2, 8, 3.0, 900), point(2, 4, 3.0, 900)]
    assert select(same_candidate, CANDIDATES, exact).concurrency == 4  # then lower concurrency


def test_the_tie_tolerance_prefers_fewer_resources_within_noise() -> None:
    points = [point(3, 8, 3.05, 2000), point(2, 4, 3.0, 1500)]
    assert select(points, CANDIDATES, Objective("throughput", tie_percent=2.0)).candidate == 2  # 1.6 % apart
    assert select(points, CANDIDATES, Objective("throughput", tie_percent=1.0)).candidate == 3


def test_latency_bound_takes_the_best_throughput_within_it() -> None:
    points = [point(1, 1, 2.0, 500), point(2, 1, 2.2, 700), point(2, 4, 3.0, 1400), point(3, 8, 3.6, 2300)]
    winner = select(points, CANDIDATES, Objective("latency", p95_bound_ms=1000))
    assert (winner.candidate, winner.concurrency) == (2, 1)
    assert (
        select(points, CANDIDATES, Objective("latency", p95_bound_ms=1400)).concurrency == 4
    )  # bound inclusive


def test_an_unmet_bound_names_the_best_p95_seen() -> None:
    points = [point(2, 4, 3.0, 1400), point(1, 1, 2.0, 612.34)]
    with pytest.raises(
        BoundNotMetError, match=r"best p95 seen was 612\.3 ms \(candidate 1, concurrency 1"
    ) as info:
        select(points, CANDIDATES, Objective("latency", p95_bound_ms=500))
    assert info.value.exit_code == 1


def test_objective_arguments_are_checked() -> None:
    with pytest.raises(TuneError, match="needs --p95-ms"):
        Objective("latency")
    with pytest.raises(TuneError, match="goes with --objective latency"):
        Objective("throughput", p95_bound_ms=100)
    with pytest.raises(TuneError, match="no candidate produced"):
        select([], CANDIDATES, Objective())


def test_points_round_trip_through_json() -> None:
    original = Point(2, 4, 3.0, 900.0, 1000.0, 1100.0, {1: 2, 4: 7}, stable=False)
    assert Point.from_json(original.to_json()) == original
    assert original.to_json()["sharp_batches"] == {"1": 2, "4": 7}
