"""Capacity model: how many Triton GPUs a request rate needs, and how the HPA copes with bursts.

Two answers, both printed:
  1. steady state (M/M/c, Erlang C): the fewest GPUs that keep a constant Poisson load stable
     under the utilisation cap and meet the p95 latency target;
  2. a discrete-event simulation of the autoscaled deployment under a bursty load: Poisson
     arrivals whose rate jumps to `burst_factor` x the base rate during bursts; a shared queue
     in front of the Triton replicas (one request at a time per GPU, service time with a given
     coefficient of variation); the gateway's admission limit (429 when the queue is full); and a
     HorizontalPodAutoscaler that reads a lagged metric (queue time per request, like
     deploy/k8s/base/triton-hpa.yaml; the backlog, requests waiting per replica, which is seen
     while it builds rather than once the waiting requests are served; or GPU busy fraction),
     applies its tolerance, scale-up
     policy, scale-down stabilisation and policy, and whose new pods become ready only after a
     start-up time. With --search it also finds the smallest warm pool (minReplicas) that meets
     the targets.

Pure Python (standard library only); deterministic for a given --seed.

    python -m benchmarks.capacity.simulate --throughput-rps 1.0 --target-rps 3
    python -m benchmarks.capacity.simulate --profile cpu-reference --target-rps 0.01 --search

Per-instance throughput must come from a measurement (perf_analyzer on the `sharp` model or the
ensemble, at the batch size the dynamic batcher forms). Until one exists, the profiles below are
ASSUMPTIONS, printed as such with every result.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
from dataclasses import asdict, dataclass, field

# name -> (requests per second per instance, where the number comes from)
PROFILES: dict[str, tuple[float, str]] = {
    "gpu-paper-claim": (
        1.0,
        "ASSUMPTION: the SHARP paper's '< 1 s per image' forward on a 'standard GPU'; "
        "not measured by us; excludes decode, unprojection and encoding. Replace with a "
        "perf_analyzer measurement.",
    ),
    "h200-network-fp16": (
        8.48,
        "MEASURED, network only: eager PyTorch fp16 forward of our full network at 1536x1536, batch 1, "
        "random weights, on one NVIDIA H200 (0.118 s; batch 4: 11.9 images/s; "
        "benchmarks/capacity/gpu_probe_h200.json). Excludes decode, unprojection and encoding, and is "
        "not the ONNX Runtime/TensorRT engine Triton serves: an upper bound for one GPU.",
    ),
    "cpu-reference": (
        1.0 / 273.4,
        "MEASURED for the reference implementation, not ours: 273.4 s per 1536x1536 forward, fp32, "
        "eager PyTorch, 2-core CPU; one instance per 2 cores.",
    ),
}
DEFAULT_POD_START_S = 180.0  # ASSUMPTION: image cached; load 1.4 GB fp16 weights; no TensorRT build
DEFAULT_METRIC_LAG_S = 30.0  # ASSUMPTION: 10 s scrape + rate window + adapter relist


@dataclass
class Config:
    throughput_rps: float
    target_rps: float
    throughput_source: str = "given on the command line"
    service_cv: float = 0.1
    burst_factor: float = 3.0
    burst_every_s: float = 900.0
    burst_duration_s: float = 120.0
    duration_s: float = 7200.0
    warmup_s: float = 600.0
    seed: int = 0
    # HPA
    hpa_metric: str = "queue"  # queue | backlog | utilization
    # queue: seconds of queue time per request; backlog: requests waiting per replica (AverageValue
    # of an External metric); utilization: busy fraction
    hpa_target: float = 1.0
    hpa_period_s: float = 15.0
    hpa_tolerance: float = 0.1
    metric_window_s: float = 60.0
    scale_up_delay_s: float = DEFAULT_METRIC_LAG_S
    pod_start_s: float = DEFAULT_POD_START_S
    scale_up_pods: int = 2
    scale_up_period_s: float = 60.0
    scale_down_stabilization_s: float = 600.0
    scale_down_pods: int = 1
    scale_down_period_s: float = 300.0
    min_replicas: int = 1
    max_replicas: int = 4
    # gateway admission control: requests that may wait in total (all gateway replicas)
    max_queue: int = 64
    # targets
    slo_p95_s: float = 10.0
    max_reject_fraction: float = 0.01
    max_utilization: float = 0.8


@dataclass
class Result:
    arrivals: int = 0
    served: int = 0
    rejected: int = 0
    p50_s: float = 0.0
    p95_s: float = 0.0
    p99_s: float = 0.0
    mean_replicas: float = 0.0
    peak_replicas: int = 0
    gpu_hours: float = 0.0
    scale_events: int = 0
    # bursts counted, and the mean seconds from a burst's start to the first scale-up decision
    # in it or within one burst length after it, over the bursts that had one
    bursts: int = 0
    bursts_scaled_up: int = 0
    scale_up_after_burst_s: float = math.inf
    meets_targets: bool = False
    timeline: list[dict] = field(default_factory=list)

    @property
    def reject_fraction(self) -> float:
        return self.rejected / self.arrivals if self.arrivals else 0.0


# ------------------------------------------------------------------------------ steady state
def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with offered load a = lambda/mu (< c)."""
    term, total = 1.0, 1.0
    for k in range(1, c):
        term *= a / k
        total += term
    last = term * a / c  # a^c / c!
    last_scaled = last * c / (c - a)
    return last_scaled / (total + last_scaled)


def mmc_latency_quantile(c: int, lam: float, mu: float, q: float = 0.95) -> float:
    """q-quantile of the response time (wait + service) of an M/M/c FIFO queue, exact.

    W is 0 with probability 1 - Pw, else exponential with rate theta = c mu - lam; the service
    time S is exponential with rate mu (conservative for a GPU, whose service time varies less).
    """
    if lam >= c * mu:
        return math.inf
    pw, theta = erlang_c(c, lam / mu), c * mu - lam

    def tail(t: float) -> float:
        if abs(theta - mu) < 1e-12:
            both = math.exp(-mu * t) * (1 + mu * t)
        else:
            both = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
        return (1 - pw) * math.exp(-mu * t) + pw * both

    lo, hi = 0.0, 1.0 / mu
    while tail(hi) > 1 - q:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tail(mid) > 1 - q else (lo, mid)
    return hi


def mmc_p95_latency(c: int, lam: float, mu: float) -> float:
    return mmc_latency_quantile(c, lam, mu, 0.95)


def steady_state_gpus(lam: float, mu: float, slo_p95_s: float, max_util: float) -> dict:
    stable = max(1, math.ceil(lam / (mu * max_util) - 1e-9))
    c = stable
    while mmc_p95_latency(c, lam, mu) > slo_p95_s and c < 10_000:
        c += 1
    return {
        "offered_load_erlangs": lam / mu,
        "gpus_for_utilization_cap": stable,
        "gpus_for_p95_slo": c,
        "p95_latency_s_at_that_count": mmc_p95_latency(c, lam, mu),
    }


# ---------------------------------------------------------------------------------- simulation
class Replica:
    __slots__ = ("busy_since", "busy_total", "draining", "id", "ready_at")

    def __init__(self, rid: int, ready_at: float):
        self.id = rid
        self.ready_at = ready_at
        self.busy_since: float | None = None
        self.busy_total = 0.0
        self.draining = False


def _rate_at(t: float, bursts: list[tuple[float, float]], cfg: Config) -> float:
    for start, end in bursts:
        if start <= t < end:
            return cfg.target_rps * cfg.burst_factor
    return cfg.target_rps


def _service_time(rng: random.Random, cfg: Config) -> float:
    mean = 1.0 / cfg.throughput_rps
    if cfg.service_cv <= 0:
        return mean
    shape = 1.0 / (cfg.service_cv**2)
    return rng.gammavariate(shape, mean / shape)


def simulate(cfg: Config, keep_timeline: bool = False) -> Result:
    rng = random.Random(cfg.seed)
    # Burst windows: Poisson-spaced starts, fixed length.
    bursts, t = [], rng.expovariate(1.0 / cfg.burst_every_s) if cfg.burst_every_s > 0 else math.inf
    while t < cfg.duration_s:
        bursts.append((t, t + cfg.burst_duration_s))
        t += cfg.burst_duration_s + rng.expovariate(1.0 / cfg.burst_every_s)
    boundaries = sorted({b for w in bursts for b in w if b < cfg.duration_s})

    events: list[tuple[float, int, str, object]] = []
    seq = 0

    def push(time: float, kind: str, payload: object = None) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (time, seq, kind, payload))

    replicas: list[Replica] = []
    next_id = 0
    for _ in range(cfg.min_replicas):
        replicas.append(Replica(next_id, 0.0))
        next_id += 1
    queue: list[float] = []  # arrival times, FIFO
    qhead = 0
    res = Result()
    latencies: list[float] = []
    # (time a request started service, its queue wait) for the HPA's queue-time metric
    started: list[tuple[float, float]] = []
    busy_log: list[tuple[float, float]] = []  # (time, cumulative busy seconds of all replicas)
    # (time, requests waiting) at each HPA period: the gauge Prometheus would scrape
    waiting_log: list[tuple[float, int]] = []
    scale_ups: list[float] = []
    busy_done = 0.0
    recommendations: list[tuple[float, int]] = []
    last_up = last_down = -math.inf
    replica_seconds = 0.0
    last_t = 0.0

    def n_spec() -> int:
        return sum(1 for r in replicas if not r.draining)

    def busy_until(now: float) -> float:
        return busy_done + sum(now - r.busy_since for r in replicas if r.busy_since is not None)

    def dispatch(now: float) -> None:
        nonlocal qhead
        for r in replicas:
            if qhead >= len(queue):
                return
            if r.busy_since is None and not r.draining and r.ready_at <= now:
                arrived = queue[qhead]
                qhead += 1
                r.busy_since = now
                started.append((now, now - arrived))
                push(now + _service_time(rng, cfg), "done", (r, arrived))

    push(rng.expovariate(cfg.target_rps), "arrival")
    for b in boundaries:
        push(b, "rate-change")
    push(cfg.hpa_period_s, "hpa")
    for r in replicas:
        push(r.ready_at, "ready", r)
    if keep_timeline:
        push(0.0, "sample")

    while events:
        now, _, kind, payload = heapq.heappop(events)
        if now > cfg.duration_s:
            break
        replica_seconds += (now - last_t) * len(replicas)
        last_t = now
        if kind == "arrival":
            if now >= cfg.warmup_s:
                res.arrivals += 1
            if len(queue) - qhead >= cfg.max_queue:
                if now >= cfg.warmup_s:
                    res.rejected += 1
            else:
                queue.append(now)
                dispatch(now)
            push(now + rng.expovariate(_rate_at(now, bursts, cfg)), "arrival")
        elif kind == "rate-change":
            # Poisson arrivals are memoryless: drop the pending arrival and redraw at the new rate.
            events = [e for e in events if e[2] != "arrival"]
            heapq.heapify(events)
            push(now + rng.expovariate(_rate_at(now, bursts, cfg)), "arrival")
        elif kind == "done":
            r, arrived = payload
            busy_done += now - r.busy_since
            r.busy_since = None
            busy_log.append((now, busy_done))
            if arrived >= cfg.warmup_s:
                res.served += 1
                latencies.append(now - arrived)
            if r.draining:
                replicas.remove(r)
            dispatch(now)
        elif kind == "ready":
            dispatch(now)
        elif kind == "sample":
            res.timeline.append(
                {
                    "t": round(now),
                    "rate": _rate_at(now, bursts, cfg),
                    "replicas": n_spec(),
                    "ready": sum(1 for r in replicas if r.ready_at <= now and not r.draining),
                    "queue": len(queue) - qhead,
                }
            )
            push(now + 60.0, "sample")
        elif kind == "hpa":
            push(now + cfg.hpa_period_s, "hpa")
            seen = now - cfg.scale_up_delay_s  # the metric the HPA sees is this old
            lo = seen - cfg.metric_window_s
            ready = [r for r in replicas if r.ready_at <= seen and not r.draining]
            if not ready:
                continue
            waiting_log.append((now, len(queue) - qhead))
            if cfg.hpa_metric == "backlog":
                # An External metric with an AverageValue target: the HPA divides the total by the
                # replicas it asked for, starting ones included.
                samples = [n for (ts, n) in waiting_log if lo <= ts <= seen]
                waiting = sum(samples) / len(samples) if samples else 0.0
                value = waiting / max(1, n_spec())
            elif cfg.hpa_metric == "queue":
                waits = [w for (ts, w) in started if lo <= ts < seen]
                value = sum(waits) / len(waits) if waits else 0.0
            else:
                b_hi = next((b for ts, b in reversed(busy_log) if ts <= seen), 0.0)
                b_lo = next((b for ts, b in reversed(busy_log) if ts <= lo), 0.0)
                value = (b_hi - b_lo) / (cfg.metric_window_s * len(ready))
            ratio = value / cfg.hpa_target
            current = n_spec()
            desired = current if abs(ratio - 1.0) <= cfg.hpa_tolerance else math.ceil(len(ready) * ratio)
            desired = min(cfg.max_replicas, max(cfg.min_replicas, desired))
            recommendations.append((now, desired))
            recommendations[:] = [
                (ts, d) for ts, d in recommendations if ts > now - cfg.scale_down_stabilization_s
            ]
            if desired > current and now - last_up >= cfg.scale_up_period_s:
                add = min(desired - current, cfg.scale_up_pods)
                for _ in range(add):
                    r = Replica(next_id, now + cfg.pod_start_s)
                    next_id += 1
                    replicas.append(r)
                    push(r.ready_at, "ready", r)
                last_up = now
                res.scale_events += 1
                scale_ups.append(now)
            elif desired < current:
                stable = max(d for _, d in recommendations)
                if stable < current and now - last_down >= cfg.scale_down_period_s:
                    remove = min(current - stable, cfg.scale_down_pods)
                    # Remove starting pods first, then idle ones, then busy ones (they drain).
                    order = sorted(
                        (r for r in replicas if not r.draining),
                        key=lambda r: (r.ready_at <= now, r.busy_since is not None),
                    )
                    for r in order[:remove]:
                        if r.busy_since is None:
                            replicas.remove(r)
                        else:
                            r.draining = True
                    last_down = now
                    res.scale_events += 1
            # keep memory bounded
            started[:] = [(ts, w) for ts, w in started if ts >= lo - cfg.metric_window_s]
            waiting_log[:] = [(ts, n) for ts, n in waiting_log if ts >= lo - cfg.metric_window_s]
        res.peak_replicas = max(res.peak_replicas, n_spec())

    latencies.sort()

    def pct(q: float) -> float:
        if not latencies:
            return math.inf
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    res.p50_s, res.p95_s, res.p99_s = pct(0.50), pct(0.95), pct(0.99)
    counted = [(start, end) for start, end in bursts if cfg.warmup_s <= start and end < cfg.duration_s]
    reactions = [
        min(up - start for up in ups)
        for start, end in counted
        if (ups := [up for up in scale_ups if start <= up <= end + cfg.burst_duration_s])
    ]
    res.bursts, res.bursts_scaled_up = len(counted), len(reactions)
    res.scale_up_after_burst_s = sum(reactions) / len(reactions) if reactions else math.inf
    res.mean_replicas = replica_seconds / max(last_t, 1e-9)
    res.gpu_hours = replica_seconds / 3600.0
    res.meets_targets = res.p95_s <= cfg.slo_p95_s and res.reject_fraction <= cfg.max_reject_fraction
    return res


def search_replicas(cfg: Config, peak_gpus: int, limit: int = 256) -> tuple[Config | None, Result | None]:
    """Smallest warm pool (minReplicas) that meets the targets, with maxReplicas at least the
    steady-state count for the burst peak. A burst shorter than metric lag + pod start-up is over
    before new pods are ready, so only capacity that is already running can absorb it."""
    n = cfg.min_replicas
    while n <= limit:
        trial = Config(
            **{**asdict(cfg), "min_replicas": n, "max_replicas": max(cfg.max_replicas, n, peak_gpus)}
        )
        res = simulate(trial)
        if res.meets_targets:
            return trial, res
        n += 1 if n < 16 else max(1, n // 8)
    return None, None


# ------------------------------------------------------------------------------------- the CLI
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.capacity.simulate", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--profile", choices=sorted(PROFILES), default="gpu-paper-claim")
    ap.add_argument("--throughput-rps", type=float, help="measured requests/s of one Triton instance (GPU)")
    ap.add_argument("--target-rps", type=float, default=2.0, help="base request rate to serve")
    d = Config(throughput_rps=1.0, target_rps=1.0)
    for name, help_text in [
        ("service_cv", "coefficient of variation of the service time"),
        ("burst_factor", "rate multiplier during a burst"),
        ("burst_every_s", "mean time between burst starts (0: no bursts)"),
        ("burst_duration_s", "length of a burst"),
        ("duration_s", "simulated time"),
        ("warmup_s", "initial time left out of the statistics"),
        (
            "hpa_target",
            "HPA target: waiting requests per replica (backlog), queue seconds per request (queue) "
            "or busy fraction (utilization)",
        ),
        ("hpa_period_s", "HPA sync period"),
        ("hpa_tolerance", "HPA tolerance around the target"),
        ("metric_window_s", "rate window of the metric"),
        (
            "scale_up_delay_s",
            f"age of the metric the HPA sees (ASSUMPTION default {DEFAULT_METRIC_LAG_S:g} s)",
        ),
        (
            "pod_start_s",
            f"from scale-up to a ready Triton pod (ASSUMPTION default {DEFAULT_POD_START_S:g} s)",
        ),
        ("scale_up_pods", "HPA scale-up policy: pods per period"),
        ("scale_up_period_s", "HPA scale-up policy period"),
        ("scale_down_stabilization_s", "HPA scale-down stabilisation window"),
        ("scale_down_pods", "HPA scale-down policy: pods per period"),
        ("scale_down_period_s", "HPA scale-down policy period"),
        ("min_replicas", "HPA minReplicas"),
        ("max_replicas", "HPA maxReplicas (GPUs available)"),
        ("max_queue", "requests allowed to wait, all gateways together (429 beyond)"),
        ("slo_p95_s", "p95 latency target (queue + service)"),
        ("max_reject_fraction", "acceptable share of 429s"),
        ("max_utilization", "utilisation cap for the steady-state sizing"),
        ("seed", "random seed"),
    ]:
        default = getattr(d, name)
        ap.add_argument(
            "--" + name.replace("_", "-"),
            type=type(default),
            default=default,
            help=f"{help_text} [{default}]",
        )
    ap.add_argument("--hpa-metric", choices=["queue", "backlog", "utilization"], default="queue")
    ap.add_argument(
        "--search", action="store_true", help="find the smallest maxReplicas that meets the targets"
    )
    ap.add_argument("--timeline", action="store_true", help="print replicas and queue once a minute")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    return ap


def config_from_args(args: argparse.Namespace) -> Config:
    if args.throughput_rps is not None:
        mu, source = args.throughput_rps, "given on the command line (--throughput-rps)"
    else:
        mu, source = PROFILES[args.profile]
        source = f"profile {args.profile}: {source}"
    if mu <= 0 or args.target_rps <= 0:
        raise SystemExit("throughput and target rate must be positive")
    fields = {k: getattr(args, k) for k in asdict(Config(1.0, 1.0)) if hasattr(args, k)}
    fields.update(throughput_rps=mu, target_rps=args.target_rps, throughput_source=source)
    return Config(**fields)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    base = steady_state_gpus(cfg.target_rps, cfg.throughput_rps, cfg.slo_p95_s, cfg.max_utilization)
    peak = steady_state_gpus(
        cfg.target_rps * cfg.burst_factor, cfg.throughput_rps, cfg.slo_p95_s, cfg.max_utilization
    )
    res = simulate(cfg, keep_timeline=args.timeline)
    found, found_res = (None, None)
    if args.search:
        found, found_res = search_replicas(cfg, peak_gpus=peak["gpus_for_p95_slo"])
    if args.json:
        out = {
            "config": asdict(cfg),
            "steady_state_base": base,
            "steady_state_peak": peak,
            "simulation": {**asdict(res), "reject_fraction": res.reject_fraction},
            "search": {
                "min_replicas": found.min_replicas if found else None,
                "max_replicas": found.max_replicas if found else None,
                "result": asdict(found_res) if found_res else None,
            },
        }
        json.dump(out, sys.stdout, indent=2, default=str)
        print()
        return 0
    print("MLSharp capacity model")
    print(f"  per-instance throughput: {cfg.throughput_rps:.4g} req/s  <- {cfg.throughput_source}")
    print(
        f"  load: {cfg.target_rps:g} req/s, bursts x{cfg.burst_factor:g} for {cfg.burst_duration_s:g} s "
        f"every ~{cfg.burst_every_s:g} s; targets p95 <= {cfg.slo_p95_s:g} s, 429s <= "
        f"{100 * cfg.max_reject_fraction:g} %"
    )
    print(
        f"  autoscaler: {cfg.hpa_metric} target {cfg.hpa_target:g}, metric age {cfg.scale_up_delay_s:g} s, "
        f"pod start {cfg.pod_start_s:g} s, replicas {cfg.min_replicas}..{cfg.max_replicas}"
    )
    print("Steady state (M/M/c, Erlang C):")
    for label, s in (("base rate", base), ("burst peak", peak)):
        print(
            f"  {label:10s}: offered load {s['offered_load_erlangs']:.2f}; instances at <= "
            f"{100 * cfg.max_utilization:g} % utilisation: {s['gpus_for_utilization_cap']}; "
            f"for the p95 target: {s['gpus_for_p95_slo']}"
        )
    print(f"Simulation ({cfg.duration_s:g} s, first {cfg.warmup_s:g} s not counted):")
    print(
        f"  {res.arrivals} requests, {res.served} served, {res.rejected} rejected "
        f"({100 * res.reject_fraction:.2f} %); latency p50 {res.p50_s:.2f} s, p95 {res.p95_s:.2f} s, "
        f"p99 {res.p99_s:.2f} s"
    )
    print(
        f"  bursts: {res.bursts}, {res.bursts_scaled_up} with a scale-up, the first one "
        f"{res.scale_up_after_burst_s:.0f} s after the burst began on average"
    )
    verdict = "MET" if res.meets_targets else "MISSED"
    print(
        f"  replicas mean {res.mean_replicas:.2f}, peak {res.peak_replicas}, {res.scale_events} scale "
        f"events, {res.gpu_hours:.2f} instance-hours; targets {verdict}"
    )
    if args.search:
        if found is None or found_res is None:
            print(
                "  search: no warm pool up to 256 instances meets the targets"
                " (raise throughput or relax them)"
            )
        else:
            print(
                f"  search: instances (GPUs) needed: minReplicas {found.min_replicas} (warm), maxReplicas "
                f"{found.max_replicas}; p95 {found_res.p95_s:.2f} s, {100 * found_res.reject_fraction:.2f} % "
                f"rejected, mean {found_res.mean_replicas:.2f} replicas "
                f"({found_res.gpu_hours:.1f} instance-hours)"
            )
    if args.timeline:
        print("  t(s)  rate  replicas  ready  queue")
        for row in res.timeline:
            print(
                f"  {row['t']:5d} {row['rate']:5.2f} {row['replicas']:9d} {row['ready']:6d} {row['queue']:6d}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
