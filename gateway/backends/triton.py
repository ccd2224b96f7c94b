"""Triton backend: the ``mlsharp`` ensemble over gRPC asyncio.

Message limits are raised (a full-resolution PLY is ~66 MB, gRPC's default cap is 4 MB), every
call has a deadline, and in-flight requests are bounded by :class:`Admission`. A Triton error
that carries an ``MLSharpError`` code becomes that typed error (a 4xx), never a 5xx.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import httpx
import numpy as np

from gateway.backends.base import Admission, InferenceResult, no_gpu
from gateway.errors import BackendError, BackendUnavailable
from gateway.logs import request_id_var
from gateway.settings import Settings
from mlsharp.errors import InvalidParameterError, MLSharpError

log = logging.getLogger("gateway.backend.triton")

_UNAVAILABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "RESOURCE_EXHAUSTED")


def _error_classes() -> dict[str, type[MLSharpError]]:
    classes, todo = {}, [MLSharpError]
    while todo:
        cls = todo.pop()
        classes[cls.code] = cls
        todo.extend(cls.__subclasses__())
    return classes


def typed_error(message: str, status: str | None) -> Exception:
    """Map a Triton error to our types: the models send ``"<code>: <message>"`` for every
    MLSharpError (see mlsharp.triton.backend), transport failures map by gRPC status."""
    from mlsharp.triton.backend import parse_error_text  # the models' side of the convention

    status = (status or "").replace("StatusCode.", "")
    if status in _UNAVAILABLE or not status:
        return BackendUnavailable(f"Triton is unavailable ({status or 'no connection'}).")
    code, text = parse_error_text(message)
    error_class = _error_classes().get(code)
    if error_class is not None:
        return error_class(text)
    if status == "INVALID_ARGUMENT":
        return InvalidParameterError(text)
    if status == "NOT_FOUND":
        return BackendUnavailable(f"Triton does not serve the model ({text}).")
    return BackendError(f"The inference server failed on this request ({code}).")


class TritonBackend:
    """Calls the ensemble with ``image_bytes``, ``focal_px``, ``focal_mm``, ``format``."""

    name = "triton"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admission = Admission(settings.max_in_flight, settings.max_queue, settings.retry_after_s)
        self._client: Any = None
        self.model_id = settings.triton_model_id or f"triton:{settings.triton_model}"

    async def start(self) -> None:
        import tritonclient.grpc.aio as grpcclient

        size = self._settings.triton_max_message_bytes
        self._client = grpcclient.InferenceServerClient(
            self._settings.triton_url,
            channel_args=[
                ("grpc.max_send_message_length", size),
                ("grpc.max_receive_message_length", size),
                ("grpc.keepalive_time_ms", 30_000),
                # After a Triton restart, reconnect within 2 s: gRPC's default backoff grows to
                # 120 s, and the compose stage saw 503s go on after Triton was healthy again.
                ("grpc.initial_reconnect_backoff_ms", 500),
                ("grpc.max_reconnect_backoff_ms", 2_000),
            ],
        )
        if self._settings.triton_model_id is None:
            await self._discover_model_id()

    async def _discover_model_id(self) -> None:
        """Read ``parameters { key: "model_id" }`` from the ensemble (or ``sharp``) config."""
        for model in (self._settings.triton_model, "sharp"):
            try:
                config = await self._client.get_model_config(
                    model, as_json=True, client_timeout=self._settings.triton_ready_timeout_s
                )
            except Exception:
                continue
            params = config.get("config", {}).get("parameters", {})
            value = params.get("model_id", {}).get("string_value")
            if value:
                self.model_id = value
                return

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def ready(self) -> bool:
        if self._client is None:
            return False
        try:
            ok = await self._client.is_model_ready(
                self._settings.triton_model, client_timeout=self._settings.triton_ready_timeout_s
            )
        except Exception:
            return False
        if ok and self.model_id.startswith("triton:") and self._settings.triton_model_id is None:
            await self._discover_model_id()
        return bool(ok)

    def load(self) -> dict[str, int]:
        return self._admission.load()

    async def device_info(self) -> dict[str, Any]:
        """GPUs as Triton's metrics endpoint reports them (count and memory; no names there)."""
        url = self._settings.triton_metrics_url
        if not url:
            return no_gpu()
        try:
            async with httpx.AsyncClient(timeout=self._settings.triton_ready_timeout_s) as client:
                text = (await client.get(url)).text
        except httpx.HTTPError:
            return no_gpu()
        memory = {
            match.group(1): float(match.group(2))
            for match in re.finditer(
                r'^nv_gpu_memory_total_bytes\{[^}]*gpu_uuid="([^"]+)"[^}]*\}\s+(\S+)', text, re.M
            )
        }
        if not memory:
            return no_gpu()
        total_mb = int(sum(memory.values()) // 2**20)
        return {
            "available": True,
            "vendor": "NVIDIA",
            "name": None,
            "count": len(memory),
            "memory_mb": total_mb,
        }

    async def infer(
        self,
        image_bytes: bytes,
        focal_px: float | None,
        focal_mm: float | None,
        fmt: str,
        *,
        wait: bool = False,
    ) -> InferenceResult:
        from tritonclient.grpc import InferInput, InferRequestedOutput
        from tritonclient.utils import InferenceServerException

        if self._client is None:
            raise BackendUnavailable("The Triton client is not started.")
        inputs = [
            InferInput("image_bytes", [1, 1], "BYTES"),
            InferInput("focal_px", [1, 1], "FP32"),
            InferInput("focal_mm", [1, 1], "FP32"),
            InferInput("format", [1, 1], "BYTES"),
        ]
        inputs[0].set_data_from_numpy(np.array([[image_bytes]], dtype=np.object_))
        inputs[1].set_data_from_numpy(np.array([[focal_px or -1.0]], dtype=np.float32))
        inputs[2].set_data_from_numpy(np.array([[focal_mm or -1.0]], dtype=np.float32))
        inputs[3].set_data_from_numpy(np.array([[fmt.encode()]], dtype=np.object_))
        outputs = [InferRequestedOutput("scene"), InferRequestedOutput("metadata")]
        async with self._admission.slot(wait=wait):
            start = time.perf_counter()
            try:
                result = await self._client.infer(
                    self._settings.triton_model,
                    inputs,
                    outputs=outputs,
                    request_id=request_id_var.get()[:64],
                    client_timeout=self._settings.triton_timeout_s,
                )
            except InferenceServerException as error:
                typed = typed_error(error.message() or str(error), error.status())
                log.warning("triton error: %s", error.message(), extra={"mapped": type(typed).__name__})
                raise typed from None
            elapsed = time.perf_counter() - start
        scene = result.as_numpy("scene").reshape(-1)[0]
        metadata_raw = result.as_numpy("metadata").reshape(-1)[0]
        metadata = json.loads(
            metadata_raw.decode("utf-8") if isinstance(metadata_raw, bytes) else metadata_raw
        )
        return InferenceResult(bytes(scene), metadata, {"triton": elapsed})
