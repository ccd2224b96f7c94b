"""``mlsharp tune``: sweep Triton settings on the real served ensemble, apply the best, cache it.

    mlsharp tune --repository artifacts/serve/model_repository
    mlsharp tune --repository R --objective latency --p95-ms 800 --max-batch 1,2,4,8

Exit codes: 0 applied (measured or from the cache), 1 nothing applied (every candidate failed, no
point met the bound, perf_analyzer unusable), 2 bad arguments or repository.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlsharp_tools.perf.run import RunSettings
from mlsharp_tools.tuning import space as space_mod
from mlsharp_tools.tuning.objective import Objective

Echo = Callable[[str], None]


def _typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def wrapped(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    wrapped.__name__ = parse.__name__
    return wrapped


def concurrency_levels(text: str) -> tuple[int, ...]:
    """``1:4`` (a range) or ``1,2,4`` (a list) -> sorted levels >= 1."""
    if ":" in text:
        start, end = (int(v) for v in text.split(":", 1))
        levels: tuple[int, ...] = tuple(range(start, end + 1))
    else:
        levels = space_mod.int_list(text)
    if not levels or min(levels) < 1:
        raise ValueError(f"concurrency levels must be >= 1, got {text!r}")
    return tuple(sorted(set(levels)))


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``tune`` on the ``mlsharp`` command line."""
    p = commands.add_parser(
        "tune",
        help="measure Triton configs of a repository with perf_analyzer and apply the best",
        description=__doc__.split("\n\n")[0].replace("``", ""),
    )
    p.add_argument("--repository", type=Path, required=True, help="exported model repository (changed)")
    p.add_argument("--objective", choices=("throughput", "latency"), default="throughput")
    p.add_argument("--p95-ms", type=float, help="latency objective: p95 bound in milliseconds")
    p.add_argument("--tie-percent", type=float, default=2.0, help="throughputs this close tie (default 2)")
    knobs = p.add_argument_group("search space (comma-separated values; their product is measured)")
    ints, default = _typed(space_mod.int_list), space_mod.DEFAULT_SWEEP
    knobs.add_argument(
        "--max-batch",
        type=ints,
        help="max_batch_size values (default " + ",".join(map(str, default["max_batch_sizes"])) + ")",
    )
    knobs.add_argument(
        "--preferred",
        type=_typed(space_mod.preferred_list),
        help="sharp's preferred batch sizes: none, max, pow2 or sizes like 2+4 (default pow2)",
    )
    knobs.add_argument("--queue-delay-us", type=ints, help="max_queue_delay_microseconds (default 0,20000)")
    knobs.add_argument("--sharp-instances", type=ints, help="sharp instance counts (default 1,2)")
    knobs.add_argument("--preprocess-instances", type=ints, help="(default: the repository's)")
    knobs.add_argument("--postprocess-instances", type=ints, help="(default: the repository's)")
    knobs.add_argument(
        "--intra-op-threads", type=ints, help="CPU runner ORT threads, 0 = auto (default: the repository's)"
    )
    knobs.add_argument(
        "--precision",
        type=_typed(space_mod.precision_list),
        help="fp32,fp16 (fp16: GPU only; default: the repository's)",
    )
    knobs.add_argument("--max-candidates", type=int, help="measure at most N candidates (in product order)")
    knobs.add_argument(
        "--time-budget-s", type=float, help="start no candidate that would end past this budget"
    )
    meas = p.add_argument_group("measurement")
    meas.add_argument(
        "--concurrency",
        type=_typed(concurrency_levels),
        help="levels, 1:4 or 1,2,4 (default per candidate: 1, B*N, 2*B*N)",
    )
    meas.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    meas.add_argument(
        "--request-count", type=int, default=16, help="requests per count window (0: time windows)"
    )
    meas.add_argument(
        "--measurement-interval-ms", type=int, default=5000, help="time windows (with --request-count 0)"
    )
    meas.add_argument("--max-trials", type=int, default=5)
    meas.add_argument("--stability-percentage", type=int, default=20)
    meas.add_argument("--perf-timeout-s", type=float, default=1800.0, help="limit per perf_analyzer run")
    meas.add_argument("--startup-timeout-s", type=float, default=600.0, help="limit per server start")
    meas.add_argument(
        "--photos", nargs="+", type=Path, help="JPEG/PNG files to send (default: generated photos)"
    )
    out = p.add_argument_group("cache and files")
    out.add_argument("--cache-dir", type=Path, help="default $XDG_CACHE_HOME/mlsharp/tune (~/.cache/...)")
    out.add_argument("--force", action="store_true", help="measure even when a valid cached result exists")
    out.add_argument(
        "--work-dir", type=Path, help="server and perf_analyzer logs (default CACHE_DIR/runs/...)"
    )
    out.add_argument("--scratch-dir", type=Path, help="where candidate repositories go (default: beside it)")
    out.add_argument(
        "--tools-dir", type=Path, help="perf_analyzer's private venv (default sys.prefix/perf-tools)"
    )
    return p


@dataclass
class TuneRequest:
    """Everything ``tune`` needs, independent of argparse (tests build it directly)."""

    repository: Path
    lists: dict[str, tuple[Any, ...] | None]
    objective: Objective
    concurrency: tuple[int, ...] | None = None
    protocol: str = "grpc"
    run: RunSettings = field(default_factory=RunSettings)
    max_candidates: int | None = None
    time_budget_s: float | None = None
    startup_timeout_s: float = 600.0
    photos: list[Path] = field(default_factory=list)
    cache_dir: Path | None = None
    force: bool = False
    work_dir: Path | None = None
    scratch_dir: Path | None = None
    tools_dir: Path | None = None


def request_from_args(args: argparse.Namespace) -> TuneRequest:
    """Translate parsed arguments (objective validation raises TuneError)."""
    return TuneRequest(
        repository=args.repository.resolve(),
        lists={
            "max_batch_sizes": args.max_batch,
            "preferred": args.preferred,
            "queue_delays_us": args.queue_delay_us,
            "sharp_instances": args.sharp_instances,
            "preprocess_instances": args.preprocess_instances,
            "postprocess_instances": args.postprocess_instances,
            "intra_op_threads": args.intra_op_threads,
            "precisions": args.precision,
        },
        objective=Objective(args.objective, args.p95_ms, args.tie_percent),
        concurrency=args.concurrency,
        protocol=args.protocol,
        run=RunSettings(
            measurement_interval_ms=args.measurement_interval_ms,
            max_trials=args.max_trials,
            stability_percentage=args.stability_percentage,
            request_count=args.request_count,
            timeout_s=args.perf_timeout_s,
        ),
        max_candidates=args.max_candidates,
        time_budget_s=args.time_budget_s,
        startup_timeout_s=args.startup_timeout_s,
        photos=list(args.photos or []),
        cache_dir=args.cache_dir,
        force=args.force,
        work_dir=args.work_dir,
        scratch_dir=args.scratch_dir,
        tools_dir=args.tools_dir,
    )


def run(args: argparse.Namespace, *, echo: Echo = print) -> int:
    """The CLI entry: errors become messages and exit codes."""
    import sys

    from mlsharp.triton.repository import RepositoryOptionsError
    from mlsharp_tools.perf.tool import PerfToolError
    from mlsharp_tools.tuning.session import tune
    from mlsharp_tools.tuning.space import TuneError

    try:
        tune(request_from_args(args), echo=echo)
    except RepositoryOptionsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TuneError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except PerfToolError as error:
        print(f"error: perf_analyzer is not usable: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the repository was not changed", file=sys.stderr)
        return 130
    return 0


def photos_digest(photos: Sequence[bytes]) -> list[str]:
    """sha256 of each photo sent (part of the cache key: other photos, other timings)."""
    return [hashlib.sha256(photo).hexdigest() for photo in photos]


def utc_now() -> datetime:
    """The default clock (tests inject their own)."""
    return datetime.now(UTC)
