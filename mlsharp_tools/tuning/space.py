"""The search space of ``mlsharp tune`` and the candidate configs it expands to.

Why a cartesian product with merging: users name a few values per knob; some combinations are the
same server (with ``max_batch_size`` 1 neither preferred sizes nor a queue delay can change what
the batcher does), and measuring those twice would only burn minutes of real inference.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlsharp.errors import MLSharpError
from mlsharp.triton.gpu_target import torch_weights_filename
from mlsharp.triton.models import SHARP, Precision, RepositoryOptions, all_configs, fp16_filename

#: the RepositoryOptions fields a tuning result sets (everything else stays as exported)
TUNED_FIELDS = (
    "max_batch_size",
    "preferred_batch_sizes",
    "max_queue_delay_us",
    "preprocess_instances",
    "sharp_instances",
    "postprocess_instances",
    "intra_op_threads",
    "precision",
)
#: named preferred-batch-size variants; explicit sizes are written like ``2+4``
PREFERRED_VARIANTS = ("none", "max", "pow2")
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16")


class TuneError(MLSharpError):
    """A tuning request that cannot be carried out, with a message that says why."""

    code = "tune_error"
    #: the command's exit status: 2 for a request that cannot work, 1 for measurements that failed
    exit_code = 2


class NoResultError(TuneError):
    """Measuring ran but produced nothing to apply."""

    exit_code = 1


@dataclass(frozen=True)
class SearchSpace:
    """The values to try per knob; each tuple holds at least one value."""

    max_batch_sizes: tuple[int, ...]
    preferred: tuple[str, ...]
    queue_delays_us: tuple[int, ...]
    sharp_instances: tuple[int, ...]
    preprocess_instances: tuple[int, ...]
    postprocess_instances: tuple[int, ...]
    intra_op_threads: tuple[int, ...]
    precisions: tuple[Precision, ...]

    def to_json(self) -> dict[str, list[Any]]:
        """Stable JSON (part of the cache key and of tuning.json)."""
        return {field.name: list(getattr(self, field.name)) for field in dataclasses.fields(self)}


@dataclass(frozen=True)
class Candidate:
    """One config to measure: full options plus the concurrency levels to drive it at."""

    index: int
    options: RepositoryOptions
    concurrency: tuple[int, ...]

    def fields(self) -> dict[str, Any]:
        """The tuned fields of this candidate (JSON values)."""
        values = {name: getattr(self.options, name) for name in TUNED_FIELDS}
        values["preferred_batch_sizes"] = list(self.options.resolved_preferred_batch_sizes())
        return values

    def resources(self) -> tuple[int, ...]:
        """Sort key for ties: smaller batch, fewer instances, smaller delay, fewer threads, fp32."""
        opts = self.options
        return (
            opts.max_batch_size,
            opts.sharp_instances,
            opts.preprocess_instances + opts.postprocess_instances,
            opts.max_queue_delay_us,
            opts.intra_op_threads,
            len(opts.resolved_preferred_batch_sizes()),
            0 if opts.precision == "fp32" else 1,  # at a tie keep full precision
        )


def int_list(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4); values must be >= 0 and unique."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise ValueError(f"expected non-negative integers, got {text!r}")
    return tuple(dict.fromkeys(values))


def preferred_list(text: str) -> tuple[str, ...]:
    """``"none,max,pow2"`` or explicit sizes such as ``"2+4"``; checked here, resolved per max batch."""
    values = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    for value in values:
        if value not in PREFERRED_VARIANTS and not all(p.isdigit() and int(p) > 0 for p in value.split("+")):
            raise ValueError(
                f"preferred batch sizes: {value!r} is none of {', '.join(PREFERRED_VARIANTS)} "
                "nor sizes like 2+4"
            )
    if not values:
        raise ValueError("preferred batch sizes: give at least one variant")
    return values


def precision_list(text: str) -> tuple[Precision, ...]:
    """``"fp32,fp16"``."""
    values = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    known = tuple(p for v in values for p in PRECISIONS if p == v)
    if len(known) != len(values) or not values:
        raise ValueError(f"precision: choose from {', '.join(PRECISIONS)}, got {text!r}")
    return known


def resolve_preferred(variant: str, max_batch_size: int) -> tuple[int, ...]:
    """The preferred sizes a variant means at ``max_batch_size`` (explicit sizes above it: ValueError).

    ``pow2`` (2, 4, 8... up to the max) is what the exporter derives by default.
    """
    if variant == "none":
        return ()
    if variant == "max":
        return (max_batch_size,)
    if variant == "pow2":
        doubling, size = [], 2
        while size <= max_batch_size:
            doubling.append(size)
            size *= 2
        return tuple(doubling)
    sizes = tuple(sorted({int(part) for part in variant.split("+")}))
    if sizes[-1] > max_batch_size:
        raise ValueError(f"preferred {variant} exceeds max batch {max_batch_size}")
    return sizes


def default_concurrency(max_batch_size: int, sharp_instances: int) -> tuple[int, ...]:
    """1 (latency alone), enough requests for full batches, and twice that (a queue behind them)."""
    full = max_batch_size * sharp_instances
    return tuple(sorted({1, full, 2 * full}))


def check_precisions(base: RepositoryOptions, space: SearchSpace, repository: Path) -> None:
    """fp16 only on GPU, and with the converted graph when the CUDA provider would load it; an int8
    or OpenVINO repository keeps its precision (its model id says so, and the export checked it)."""
    if base.precision == "int8" and set(space.precisions) != {"int8"}:
        raise TuneError(
            f"{repository} serves the int8 opt-in (model id {base.model_id}); its precision is chosen at "
            "export, not tuned. Leave out --precision, or re-export without int8 to tune fp32."
        )
    if base.runtime == "openvino" and set(space.precisions) != {base.precision}:
        raise TuneError(
            f"{repository} serves OpenVINO {base.precision} (model id {base.model_id}); its precision is "
            "chosen and checked at export, not tuned. Leave out --precision, or re-export with "
            "--precision ov-fp32 / ov-bf16 / auto."
        )
    if "fp16" not in space.precisions:
        return
    if base.target != "gpu":
        raise TuneError(
            f"--precision fp16 needs a GPU repository; {repository} targets {base.target} (its CPU runner "
            "runs fp32 only). Drop fp16 or export with --target gpu --precision fp32,fp16."
        )
    if base.gpu_runtime == "torch":
        fp16_file = repository / SHARP / "1" / torch_weights_filename("fp16")
    else:  # TensorRT and CUDA both load the mixed-precision graph
        fp16_file = repository / SHARP / "1" / fp16_filename(base.onnx_filename)
    if not fp16_file.is_file():
        raise TuneError(
            f"--precision fp16 with the {base.gpu_runtime} GPU runtime loads {fp16_file}, which this "
            "repository lacks; re-export with --precision fp16 or tune the exported precision only."
        )


def expand(
    base: RepositoryOptions, space: SearchSpace, concurrency: Sequence[int] | None = None
) -> tuple[list[Candidate], list[str]]:
    """Every distinct candidate, in the order of the product, plus notes on what was merged or dropped.

    ``concurrency`` applies to all candidates; None derives the levels from each candidate's batch.
    """
    notes: list[str] = []
    seen: dict[RepositoryOptions, int] = {}
    candidates: list[Candidate] = []
    merged = 0
    product = itertools.product(
        space.max_batch_sizes,
        space.preferred,
        space.queue_delays_us,
        space.preprocess_instances,
        space.sharp_instances,
        space.postprocess_instances,
        space.intra_op_threads,
        space.precisions,
    )
    for max_batch, variant, delay_us, pre, sharp, post, threads, precision in product:
        if max_batch < 1 or min(pre, sharp, post) < 1:
            raise TuneError("max batch sizes and instance counts must be >= 1")
        try:
            preferred = resolve_preferred(variant, max_batch)
        except ValueError as error:
            notes.append(f"dropped: {error}")
            continue
        if max_batch == 1:  # a batch of one is full at once: preferred sizes and delay do nothing
            preferred, delay_us = (), 0
        options = dataclasses.replace(
            base,
            max_batch_size=max_batch,
            preferred_batch_sizes=preferred,
            max_queue_delay_us=delay_us,
            preprocess_instances=pre,
            sharp_instances=sharp,
            postprocess_instances=post,
            intra_op_threads=threads,
            precision=precision,
        )
        if options in seen:
            merged += 1
            continue
        all_configs(options)  # validates: a bad combination fails here, before any server starts
        levels = tuple(concurrency) if concurrency else default_concurrency(max_batch, sharp)
        seen[options] = len(candidates)
        candidates.append(Candidate(len(candidates) + 1, options, levels))
    if merged:
        notes.append(
            f"merged {merged} combination(s) identical to another candidate "
            "(max batch 1 ignores preferred sizes and queue delay)"
        )
    if not candidates:
        raise TuneError("the search space yields no valid candidate: " + "; ".join(notes))
    return candidates, notes


#: defaults of the knobs the tuner always sweeps (fixed values, so that a cached result stays
#: addressable after its winner has been applied to the repository)
DEFAULT_SWEEP = {
    "max_batch_sizes": (1, 2, 4),
    "preferred": ("pow2",),
    "queue_delays_us": (0, 20_000),
    "sharp_instances": (1, 2),
}


def space_from_lists(base: RepositoryOptions, **lists: tuple[Any, ...] | None) -> SearchSpace:
    """A space from the given lists; the core knobs default to :data:`DEFAULT_SWEEP`, the others
    (preprocess/postprocess instances, ORT threads, precision) to the repository's current value."""
    current: dict[str, tuple[Any, ...]] = {
        **DEFAULT_SWEEP,
        "preprocess_instances": (base.preprocess_instances,),
        "postprocess_instances": (base.postprocess_instances,),
        "intra_op_threads": (base.intra_op_threads,),
        "precisions": (base.precision,),
    }
    unknown = set(lists) - set(current)
    if unknown:
        raise TypeError(f"unknown search-space knobs {sorted(unknown)}")
    return SearchSpace(**{name: tuple(lists.get(name) or value) for name, value in current.items()})
