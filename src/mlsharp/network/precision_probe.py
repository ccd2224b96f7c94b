"""Where low precision hurts the network: activation maxima and fp16/bf16 deviation per layer type.

Eager PyTorch only, so it runs on any device (the CPU tests, the CUDA GPU check). Two measures:

* :func:`activation_maxima`: one fp32 forward with forward hooks; per layer type (module class
  name) the largest |output| any module of that type produced. A type above fp16's largest finite
  value (65504) overflows to inf in fp16; one above :data:`FP16_MARGIN` of it is flagged too.
* :func:`precision_deviation`: the same fp32 forward (its maxima and final outputs kept), then one
  forward of a low-precision copy of the model (every weight and op in ``dtype``, the worst case).
  A hook on each probed module of the low-precision copy recomputes that module in fp32 from ITS
  OWN inputs upcast (the original fp32 module of the same name) and compares: the per-layer LOCAL
  error, not the error accumulated from upstream layers, which the five final outputs show instead.

Memory: only reductions (maxima, diffs) are kept per module, never whole activations of both runs;
the recompute holds one module's fp32 activations at a time, so the peak is about one forward plus
the fp32 and low-precision weights (measured at the full preset by the GPU check, not assumed).

Probed modules: every leaf module (Conv2d, Linear, LayerNorm, GroupNorm, ReLU, ...) and our own
blocks in :data:`BLOCK_TYPES`; big containers (the ViT, the encoders, decoders) are not recomputed,
since their local error would be a whole sub-network's error and cost another forward each.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from mlsharp.network.predictor import RAW_OUTPUT_NAMES

#: largest finite fp16 value
FP16_MAX = 65504.0
#: a layer type whose fp32 maximum exceeds this share of FP16_MAX is flagged as near overflow
FP16_MARGIN = 0.5
#: identities: nothing to measure
SKIPPED_TYPES: frozenset[str] = frozenset({"Identity", "Sequential", "ModuleList", "Dropout"})
#: composite modules probed as a whole besides the leaves (each recompute is one block, not a network)
BLOCK_TYPES: frozenset[str] = frozenset(
    {
        "Block", "Attention", "Mlp", "PatchEmbed", "LayerScale", "ResidualUnit", "FeatureFusionBlock",
        "PreActResidualBlock", "SkipConvEncoder", "DirectPredictionHead", "GaussianComposer",
        "MultiLayerInitializer",
    }
)  # fmt: skip

Hook = Callable[[nn.Module, tuple[Any, ...], dict[str, Any], Any], None]


@dataclass
class LayerStats:
    """fp32 activation maximum of one layer type."""

    layer_type: str
    modules: int  # distinct modules of this type that ran
    max_abs_fp32: float
    finite: bool = True

    @property
    def fp16_overflow(self) -> bool:
        return not self.finite or self.max_abs_fp32 > FP16_MAX

    @property
    def fp16_near_overflow(self) -> bool:
        return self.fp16_overflow or self.max_abs_fp32 > FP16_MARGIN * FP16_MAX


@dataclass
class Deviation:
    """Worst low-precision-vs-fp32 difference over the modules of one type (or one output)."""

    name: str
    modules: int  # distinct modules compared (1 for an output)
    max_abs_diff: float
    #: max over modules of max|diff| / max|fp32 output of that module|
    max_rel_diff: float
    finite: bool = True


@dataclass
class PrecisionReport:
    """fp32 maxima and ``dtype``-vs-fp32 deviations of one input, per layer type and per output."""

    dtype: str
    device: str
    mode: str = "local: each module recomputed in fp32 from its own low-precision inputs"
    maxima: dict[str, LayerStats] = field(default_factory=dict)
    layers: dict[str, Deviation] = field(default_factory=dict)
    outputs: dict[str, Deviation] = field(default_factory=dict)

    @property
    def fp16_flagged(self) -> list[str]:
        """Layer types at or near fp16 overflow in fp32 (sorted)."""
        return sorted(name for name, s in self.maxima.items() if s.fp16_near_overflow)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["fp16_flagged"] = self.fp16_flagged
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PrecisionReport:
        return cls(
            dtype=data["dtype"],
            device=data["device"],
            mode=data["mode"],
            maxima={k: LayerStats(**v) for k, v in data["maxima"].items()},
            layers={k: Deviation(**v) for k, v in data["layers"].items()},
            outputs={k: Deviation(**v) for k, v in data["outputs"].items()},
        )


def probed(module: nn.Module) -> bool:
    """Leaves and :data:`BLOCK_TYPES`; not the containers (see the module docstring)."""
    kind = type(module).__name__
    return kind not in SKIPPED_TYPES and (next(module.children(), None) is None or kind in BLOCK_TYPES)


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Floating tensors in a module's output (tensors, tuples, lists, dicts, dataclasses)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _tensors(getattr(value, f.name))


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """``value`` with every floating tensor in ``dtype`` (same containers)."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, list | tuple):
        items = [_cast(v, dtype) for v in value]
        if isinstance(value, list):
            return items
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)  # NamedTuple
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(
            value, **{f.name: _cast(getattr(value, f.name), dtype) for f in dataclasses.fields(value)}
        )
    return value


def _max_abs(value: Any) -> float:
    """max |x| over the output's tensors in float64 arithmetic (inf/nan propagate); aminmax: no copy."""
    best = 0.0
    for t in _tensors(value):
        if t.numel():
            low, high = torch.aminmax(t.detach())
            best = max(best, abs(float(low)), abs(float(high)))
            if math.isnan(float(low)) or math.isnan(float(high)):
                return math.nan
    return best


def _hooked(model: nn.Module, hook_for: Callable[[str, nn.Module], Hook]) -> list[Any]:
    return [
        module.register_forward_hook(hook_for(name, module), with_kwargs=True)
        for name, module in model.named_modules()
        if name and probed(module)
    ]


def _run_fp32(
    model: nn.Module, image: torch.Tensor, factor: torch.Tensor
) -> tuple[dict[str, LayerStats], tuple[torch.Tensor, ...]]:
    per_module: dict[str, tuple[str, float]] = {}

    def hook_for(name: str, module: nn.Module) -> Hook:
        def hook(_m: nn.Module, _args: tuple[Any, ...], _kwargs: dict[str, Any], output: Any) -> None:
            peak = _max_abs(output)
            previous = per_module.get(name, ("", 0.0))[1]
            per_module[name] = (type(module).__name__, peak if math.isnan(peak) else max(previous, peak))

        return hook

    handles = _hooked(model, hook_for)
    try:
        with torch.inference_mode():
            outputs = tuple(model(image.float(), factor.float()))
    finally:
        for handle in handles:
            handle.remove()
    stats: dict[str, LayerStats] = {}
    for layer_type, peak in per_module.values():
        entry = stats.setdefault(layer_type, LayerStats(layer_type, 0, 0.0))
        entry.modules += 1
        entry.finite = entry.finite and math.isfinite(peak)
        entry.max_abs_fp32 = max(entry.max_abs_fp32, peak if math.isfinite(peak) else math.inf)
    return dict(sorted(stats.items())), outputs


def activation_maxima(model: nn.Module, image: torch.Tensor, factor: torch.Tensor) -> dict[str, LayerStats]:
    """Largest |output| per layer type in one fp32 forward of ``image`` (B, 3, S, S), ``factor`` (B,)."""
    return _run_fp32(model, image, factor)[0]


def _merge(
    table: dict[str, Deviation], seen: set[str], key: str, name: str, diff: float, rel: float, finite: bool
) -> None:
    """Fold one module's (or output's) comparison into its type's worst case."""
    entry = table.setdefault(name, Deviation(name, 0, 0.0, 0.0))
    if key not in seen:
        seen.add(key)
        entry.modules += 1
    entry.finite = entry.finite and finite
    entry.max_abs_diff = max(entry.max_abs_diff, diff)
    entry.max_rel_diff = max(entry.max_rel_diff, rel)


def _compare(low: Any, reference: Any) -> tuple[float, float, bool]:
    """(max|diff|, max|diff| / max|reference|, all finite) over matching output tensors."""
    diff, scale, finite = 0.0, 0.0, True
    for lo, ref in zip(_tensors(low), _tensors(reference), strict=True):
        if not lo.numel():
            continue
        finite = finite and bool(torch.isfinite(lo).all())
        low_d, high_d = torch.aminmax(lo.float() - ref.float())
        diff = max(diff, abs(float(low_d)), abs(float(high_d)))
        scale = max(scale, _max_abs(ref))
    if not finite:
        return math.inf, math.inf, False
    return diff, diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf), True


def precision_deviation(
    model: nn.Module, image: torch.Tensor, factor: torch.Tensor, dtype: torch.dtype
) -> PrecisionReport:
    """``dtype`` (torch.float16 / torch.bfloat16) against fp32 on one input, per layer type (local
    error, see the module docstring) and per raw output (end to end). ``model`` stays fp32."""
    model = model.eval()
    maxima, reference = _run_fp32(model, image, factor)
    fp32_modules = dict(model.named_modules())
    low_model = copy.deepcopy(model).to(dtype)
    device = str(next(model.parameters()).device)
    report = PrecisionReport(str(dtype).removeprefix("torch."), device, maxima=maxima)
    seen: set[str] = set()

    def hook_for(name: str, module: nn.Module) -> Hook:
        fp32_module = fp32_modules[name]

        def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            ref = fp32_module(*_cast(args, torch.float32), **_cast(kwargs, torch.float32))
            diff, rel, finite = _compare(output, ref)
            del ref
            _merge(report.layers, seen, name, type(module).__name__, diff, rel, finite)

        return hook

    handles = _hooked(low_model, hook_for)
    try:
        with torch.inference_mode():
            outputs = tuple(low_model(image.to(dtype), factor.to(dtype)))
    finally:
        for handle in handles:
            handle.remove()
        del low_model
    for name, low, ref in zip(RAW_OUTPUT_NAMES, outputs, reference, strict=True):
        _merge(report.outputs, seen, f"output:{name}", name, *_compare(low, ref))
    report.layers = dict(sorted(report.layers.items()))
    return report
