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
from typing import Any, NamedTuple

import httpx
import numpy as np

from gateway.backends.base import Admission, InferenceResult, no_gpu
from gateway.errors import BackendError, BackendUnavailable, Overloaded
from gateway.logs import request_id_var
from gateway.settings import Settings
from mlsharp.errors import InvalidParameterError, error_from_code

log = logging.getLogger("gateway.backend.triton")

_UNAVAILABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "RESOURCE_EXHAUSTED")


#: what Triton says when a model's bounded queue (default_queue_policy.max_queue_size) is full
_QUEUE_FULL = "Exceeds maximum queue size"


def typed_error(message: str, status: str | None, retry_after_s: float = 5.0) -> Exception:
    """Map a Triton error to our types: the models send a JSON ``{"code", "message"}`` for every
    error (see mlsharp.triton.backend), transport failures map by gRPC status. A full queue in
    Triton is overload (429 with Retry-After), not an outage (503)."""
    from mlsharp.triton.backend import parse_error_text  # the models' side of the convention

    status = (status or "").replace("StatusCode.", "")
    if _QUEUE_FULL in message:
        return Overloaded(
            "The inference server's queue is full; retry after the time in Retry-After.",
            retry_after_s=retry_after_s,
        )
    if status in _UNAVAILABLE or not status:
        return BackendUnavailable(f"Triton is unavailable ({status or 'no connection'}).")
    code, text = parse_error_text(message)
    typed = error_from_code(code, text)
    if typed is not None:
        return typed
    if status == "INVALID_ARGUMENT":
        return InvalidParameterError(text)
    if status == "NOT_FOUND":
        return BackendUnavailable(f"Triton does not serve the model ({text}).")
    return BackendError(f"The inference server failed on this request ({code}).")


class ServedConfig(NamedTuple):
    """What the gateway needs from the served repository: the model id and the batching shape."""

    model_id: str | None
    max_batch_size: int
    instances: int


def served_config(sharp: dict[str, Any], ensemble: dict[str, Any] | None = None) -> ServedConfig:
    """Read ``parameters.model_id`` (ensemble first, then ``sharp``), ``max_batch_size`` and the
    instance count of ``sharp`` from Triton's JSON model configs."""
    model_id = None
    for config in (ensemble or {}, sharp):
        value = config.get("parameters", {}).get("model_id", {}).get("string_value")
        if value:
            model_id = str(value)
            break
    groups = sharp.get("instance_group") or [{}]
    instances = sum(int(group.get("count", 1)) for group in groups)
    return ServedConfig(model_id, max(1, int(sharp.get("max_batch_size", 1))), max(1, instances))


def default_in_flight(config: ServedConfig) -> int:
    """Enough requests in flight for the batcher to fill every instance twice over: one batch
    runs while the next one forms (and preprocess/postprocess overlap with the network)."""
    return config.max_batch_size * config.instances * 2


class TritonBackend:
    """Calls the ensemble with ``image_bytes``, ``focal_px``, ``focal_mm``, ``formats``.

    Not ready until the model id has been read from the served config (or set explicitly): the
    id is part of every cache key, so an invented one could serve another model's scenes.
    """

    name = "triton"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admission = Admission(settings.max_in_flight or 1, settings.max_queue, settings.retry_after_s)
        self._client: Any = None
        self.model_id = settings.triton_model_id or ""
        self.served: ServedConfig | None = None

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
        await self._read_served_config()

    async def _config(self, model: str) -> dict[str, Any] | None:
        try:
            reply = await self._client.get_model_config(
                model, as_json=True, client_timeout=self._settings.triton_ready_timeout_s
            )
        except Exception:
            return None
        return dict(reply.get("config", {}))

    async def _read_served_config(self) -> bool:
        """Model id and admission limit from the served configs; False while they cannot be read."""
        if self.served is not None:
            return True
        sharp = await self._config("sharp")
        if sharp is None:
            return False
        config = served_config(sharp, await self._config(self._settings.triton_model))
        model_id = self._settings.triton_model_id or config.model_id
        if not model_id:
            log.error("the served config has no model_id parameter; set triton_model_id")
            return False
        self.model_id, self.served = model_id, config
        if self._settings.max_in_flight is None:
            self._admission.resize(default_in_flight(config))
        log.info(
            "triton model config read",
            extra={"model_id": model_id, "max_in_flight": self._admission.max_in_flight},
        )
        return True

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
        return bool(ok) and await self._read_served_config()

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
        formats: tuple[str, ...],
        *,
        wait: bool = False,
    ) -> InferenceResult:
        from tritonclient.grpc import InferInput, InferRequestedOutput
        from tritonclient.utils import InferenceServerException

        if self._client is None or not await self._read_served_config():
            raise BackendUnavailable("Triton's model config has not been read yet.")
        inputs = [
            InferInput("image_bytes", [1, 1], "BYTES"),
            InferInput("focal_px", [1, 1], "FP32"),
            InferInput("focal_mm", [1, 1], "FP32"),
            InferInput("formats", [1, len(formats)], "BYTES"),
        ]
        inputs[0].set_data_from_numpy(np.array([[image_bytes]], dtype=np.object_))
        inputs[1].set_data_from_numpy(np.array([[focal_px or -1.0]], dtype=np.float32))
        inputs[2].set_data_from_numpy(np.array([[focal_mm or -1.0]], dtype=np.float32))
        inputs[3].set_data_from_numpy(np.array([[fmt.encode() for fmt in formats]], dtype=np.object_))
        outputs = [InferRequestedOutput("scenes"), InferRequestedOutput("metadata")]
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
                typed = typed_error(
                    error.message() or str(error), error.status(), self._admission.retry_after()
                )
                log.warning("triton error: %s", error.message(), extra={"mapped": type(typed).__name__})
                raise typed from None
            elapsed = time.perf_counter() - start
        scenes = [bytes(item) for item in result.as_numpy("scenes").reshape(-1)]
        if len(scenes) != len(formats):
            raise BackendError(f"Triton returned {len(scenes)} scenes for {len(formats)} formats.")
        metadata_raw = result.as_numpy("metadata").reshape(-1)[0]
        metadata = json.loads(
            metadata_raw.decode("utf-8") if isinstance(metadata_raw, bytes) else metadata_raw
        )
        return InferenceResult(dict(zip(formats, scenes, strict=True)), metadata, {"triton": elapsed})
