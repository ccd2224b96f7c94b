"""Plumbing shared by the python-backend ``model.py`` files, kept out of them so they stay thin.

Why: the python backend hands ``execute`` a list of requests and never batches or isolates them
for you. These helpers loop over requests so that one bad image fails only its own request
(``InferenceResponse(error=TritonError(...))``), read the generated config parameters, and send
typed errors as ``mlsharp-error {"code": ..., "message": ...}`` (JSON after a marker, since
Triton prefixes ensemble errors with its own text) so the gateway reads the code back in one
place (:func:`parse_error_text`) instead of matching English.
``pb_utils`` is passed in (it only exists inside the stub), which also lets tests use a fake.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mlsharp.errors import MLSharpError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

INTERNAL_ERROR_CODE = "internal_error"
#: marks the start of the JSON error document inside a Triton error string
ERROR_MARKER = "mlsharp-error "

Arrays = dict[str, np.ndarray]


def model_parameters(args: Mapping[str, Any]) -> dict[str, str]:
    """``parameters`` of the model's config (from ``initialize(args)``) as plain strings."""
    config = json.loads(args["model_config"])
    return {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}


def flag(parameters: Mapping[str, str], key: str) -> bool:
    """A boolean config parameter ("true"/"1"/"yes")."""
    return parameters.get(key, "").strip().lower() in {"1", "true", "yes"}


def error_text(exc: BaseException) -> str:
    """``mlsharp-error {"code", "message"}``; unexpected exceptions are ``internal_error``."""
    if isinstance(exc, MLSharpError):
        code, message = exc.code, str(exc)
    else:
        code, message = INTERNAL_ERROR_CODE, f"{type(exc).__name__}: {exc}"
    return ERROR_MARKER + json.dumps({"code": code, "message": message})


def parse_error_text(text: str) -> tuple[str, str]:
    """Inverse of :func:`error_text` on a Triton error string (which may carry a prefix such as
    ``"in ensemble 'mlsharp', "``); anything else gives ``("internal_error", text)``."""
    at = text.find(ERROR_MARKER)
    if at >= 0:
        try:
            doc = json.loads(text[at + len(ERROR_MARKER) :])
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("code"), str):
            return doc["code"], str(doc.get("message", ""))
    return INTERNAL_ERROR_CODE, text.strip()


def as_text(value: Any) -> str:
    """One element of a BYTES tensor as ``str``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def as_bytes(value: Any) -> bytes:
    """One element of a BYTES tensor as ``bytes``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def bytes_column(values: Sequence[bytes]) -> np.ndarray:
    """``[B, 1]`` object array of bytes: the shape of a ``TYPE_STRING dims: [1]`` batch."""
    out = np.empty((len(values), 1), dtype=np.object_)
    for index, value in enumerate(values):
        out[index, 0] = value
    return out


def read_inputs(pb_utils: Any, request: Any, names: Iterable[str]) -> Arrays:
    """Input tensors of one request as numpy arrays (missing ones raise ``KeyError``)."""
    return read_tensors(pb_utils, request, (), names)


def make_response(pb_utils: Any, outputs: Mapping[str, Any]) -> Any:
    """A successful response from named numpy arrays and/or torch tensors (see :func:`output_tensor`)."""
    tensors = [output_tensor(pb_utils, name, value) for name, value in outputs.items()]
    return pb_utils.InferenceResponse(output_tensors=tensors)


def error_response(pb_utils: Any, exc: BaseException, model: str) -> Any:
    """A failed response for one request; unexpected errors are logged with their traceback."""
    if not isinstance(exc, MLSharpError):
        detail = "".join(traceback.format_exception(exc))
        _log(pb_utils, f"{model}: unexpected error\n{detail}", error=True)
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(error_text(exc)))


def each_request(
    pb_utils: Any,
    requests: Sequence[Any],
    input_names: Sequence[str],
    handler: Callable[[Tensors], Mapping[str, Any]],
    model: str,
    *,
    torch_names: Sequence[str] = (),
) -> list[Any]:
    """Run ``handler`` on every request alone; an exception fails only that request.

    ``input_names`` are read as numpy, ``torch_names`` as torch tensors where Triton put them (the
    GPU target's device stages); torch outputs leave by DLPack.
    """
    responses = []
    for request in requests:
        try:
            inputs = read_tensors(pb_utils, request, torch_names, input_names)
            responses.append(make_response(pb_utils, handler(inputs)))
        except Exception as exc:
            responses.append(error_response(pb_utils, exc, model))
    return responses


# --- DLPack I/O for the GPU target's python models (KIND_GPU, FORCE_CPU_ONLY_INPUT_TENSORS off) ---
#: a request's or response's named tensors: torch tensors (any device) and numpy arrays mixed
Tensors = dict[str, Any]


def as_torch(pb_tensor: Any) -> torch.Tensor:
    """One input as a torch tensor where Triton put it: a GPU tensor by DLPack (no copy), a CPU
    tensor through numpy (no copy either; the stub's CPU DLPack path is no faster)."""
    import torch

    if pb_tensor.is_cpu():
        return torch.from_numpy(pb_tensor.as_numpy())
    return torch.utils.dlpack.from_dlpack(pb_tensor.to_dlpack())


def as_host_numpy(pb_tensor: Any) -> np.ndarray:
    """One input as numpy (BYTES, cameras, formats): GPU-resident ones are copied to the host."""
    if pb_tensor.is_cpu():
        array: np.ndarray = pb_tensor.as_numpy()
        return array
    return as_torch(pb_tensor).cpu().numpy()


def kind_device(args: Mapping[str, Any]) -> torch.device | None:
    """The CUDA device of a ``KIND_GPU`` instance from Triton's ``initialize`` args
    (``model_instance_kind``, ``model_instance_device_id``); None for any other kind."""
    import torch

    if str(args.get("model_instance_kind", "")).upper() == "GPU":
        return torch.device("cuda", int(args.get("model_instance_device_id", 0)))
    return None


#: ``execute`` of a python model instance: (pb_utils, requests) -> responses
Executor = Callable[[Any, Sequence[Any]], list[Any]]


def read_tensors(
    pb_utils: Any, request: Any, torch_names: Iterable[str], numpy_names: Iterable[str]
) -> Tensors:
    """Inputs of one request: ``torch_names`` as torch tensors, ``numpy_names`` as numpy arrays
    (missing ones raise ``KeyError``)."""
    tensors: Tensors = {}
    for names, convert in ((torch_names, as_torch), (numpy_names, as_host_numpy)):
        for name in names:
            pb_tensor = pb_utils.get_input_tensor_by_name(request, name)
            if pb_tensor is None:
                raise KeyError(f"request has no input {name!r}")
            tensors[name] = convert(pb_tensor)
    return tensors


def output_tensor(pb_utils: Any, name: str, value: Any) -> Any:
    """A response tensor: a torch tensor goes out by DLPack (stays on its device), numpy as is."""
    import torch
    from torch.utils.dlpack import to_dlpack  # type: ignore[attr-defined]  # re-exported from torch._C

    if isinstance(value, torch.Tensor):
        capsule = to_dlpack(value.detach().contiguous())  # a DLPack capsule, as the stub's API takes
        return pb_utils.Tensor.from_dlpack(name, capsule)
    return pb_utils.Tensor(name, np.asarray(value))


def _log(pb_utils: Any, message: str, *, error: bool = False) -> None:
    logger = getattr(pb_utils, "Logger", None)
    if logger is not None:
        (logger.log_error if error else logger.log_info)(message)
    else:
        (log.error if error else log.info)(message)


def all_requests_at_once(
    pb_utils: Any,
    requests: Sequence[Any],
    input_names: Sequence[str],
    handler: Callable[[list[Tensors]], Sequence[Mapping[str, Any]]],
    model: str,
    *,
    torch_names: Sequence[str] = (),
    check: Callable[[Tensors], object] | None = None,
) -> list[Any]:
    """Run ``handler`` ONCE on every readable request (the batched network call).

    A request whose inputs cannot be read, or that ``check`` refuses (e.g. a mis-shaped image),
    fails alone; if the batched call itself raises, every request in it fails with that error (they
    shared the computation). Inputs are read as in :func:`each_request`.
    """
    responses: list[Any] = [None] * len(requests)
    batch: list[Tensors] = []
    slots: list[int] = []
    for index, request in enumerate(requests):
        try:
            inputs = read_tensors(pb_utils, request, torch_names, input_names)
            if check is not None:
                check(inputs)
            batch.append(inputs)
            slots.append(index)
        except Exception as exc:
            responses[index] = error_response(pb_utils, exc, model)
    if batch:
        try:
            outputs = handler(batch)
            for index, arrays in zip(slots, outputs, strict=True):
                responses[index] = make_response(pb_utils, arrays)
        except Exception as exc:
            for index in slots:
                responses[index] = error_response(pb_utils, exc, model)
    return responses
