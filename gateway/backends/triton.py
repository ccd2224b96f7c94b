"""Triton backend: the ``mlsharp`` ensemble over gRPC asyncio, spread over every Triton endpoint.

Message limits are raised (a full-resolution PLY is ~66 MB, gRPC's default cap is 4 MB), every
call has a deadline, and in-flight requests are bounded by :class:`Admission` (or, with
``limits_redis_url``, by the admission shared by all gateways). A Triton error that carries an
``MLSharpError`` code becomes that typed error (a 4xx), never a 5xx.

Requests go to the endpoints of :class:`EndpointPool` (``triton_url`` may list several or name a
headless Service). A request that fails in a way that proves it did not run (the endpoint is
unreachable, stopping, lacks the model, or its queue is full) or where running it again is
harmless is retried ONCE on another endpoint. Running an inference twice is harmless: it is a
pure function of the image, the focal override and the weights (no state changes in Triton; the
gateway stores the result once, by content key), so the only cost of a duplicate is GPU time.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

import numpy as np

from gateway.backends.admission_shared import build_admission
from gateway.backends.base import InferenceResult
from gateway.backends.endpoints import Endpoint, EndpointPool, Resolver
from gateway.backends.triton_metrics import device_info, metrics_urls
from gateway.errors import BackendError, BackendUnavailable, Overloaded
from gateway.logs import request_id_var
from gateway.settings import Settings
from mlsharp.errors import InvalidParameterError, error_from_code
from mlsharp.formats.metadata import parse_metadata

log = logging.getLogger("gateway.backend.triton")

_UNAVAILABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "RESOURCE_EXHAUSTED")


#: what Triton says when a model's bounded queue (default_queue_policy.max_queue_size) is full
_QUEUE_FULL = "Exceeds maximum queue size"
#: what Triton answers to new requests once it has been told to stop (rolling update, scale-down)
_STOPPING = "Server is stopping"
#: gRPC statuses after which another endpoint may serve the request: unreachable/stopping, or
#: the model not (or no longer) loaded there. DEADLINE_EXCEEDED and CANCELLED are not retried:
#: the time the caller allowed is spent.
_RETRY_STATUSES = ("UNAVAILABLE", "NOT_FOUND")


def retry_elsewhere(message: str, status: str | None) -> bool:
    """True when the request did not run (or running it again is harmless) and another endpoint
    may serve it: transport failures, a stopping server, a missing model, a full queue."""
    status = (status or "").replace("StatusCode.", "")
    return not status or status in _RETRY_STATUSES or _STOPPING in message or _QUEUE_FULL in message


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
    if status in _UNAVAILABLE or not status or _STOPPING in message:
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

    def __init__(self, settings: Settings, *, resolver: Resolver | None = None) -> None:
        self._settings = settings
        self._admission = build_admission(settings)
        self._pool = EndpointPool(
            settings.triton_url,
            self._connect,
            self._probe,
            interval_s=settings.triton_resolve_interval_s,
            on_change=self._endpoints_changed,
            **({"resolver": resolver} if resolver is not None else {}),
        )
        self._started = False
        self._requests: Any = None  # Counter(endpoint, outcome) once metrics are bound
        self._counted: set[tuple[str, str]] = set()
        self.model_id = settings.triton_model_id or ""
        self.served: ServedConfig | None = None

    @property
    def pool(self) -> EndpointPool:
        return self._pool

    def bind_metrics(self, metrics: Any) -> None:
        """Per-endpoint request counts (label ``endpoint``) and the shared admission's errors."""
        self._requests = metrics.backend_endpoint_requests
        bind = getattr(self._admission, "bind_metrics", None)
        if bind is not None:
            bind(metrics)

    def _connect(self, address: str) -> Any:
        import tritonclient.grpc.aio as grpcclient

        size = self._settings.triton_max_message_bytes
        return grpcclient.InferenceServerClient(
            address,
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

    async def _probe(self, endpoint: Endpoint) -> bool:
        try:
            return bool(
                await endpoint.client.is_model_ready(
                    self._settings.triton_model, client_timeout=self._settings.triton_ready_timeout_s
                )
            )
        except Exception:
            return False

    async def start(self) -> None:
        start = getattr(self._admission, "start", None)
        if start is not None:
            await start()
        await self._pool.start()
        self._started = True
        await self._read_served_config()

    async def _config(self, model: str) -> dict[str, Any] | None:
        """The model's config from the first endpoint that answers (ready ones first)."""
        for endpoint in sorted(self._pool.endpoints, key=lambda e: not e.ready):
            try:
                reply = await endpoint.client.get_model_config(
                    model, as_json=True, client_timeout=self._settings.triton_ready_timeout_s
                )
            except Exception:
                continue
            return dict(reply.get("config", {}))
        return None

    async def _read_served_config(self) -> bool:
        """Model id and admission limit from the served configs; False while they cannot be read.
        Every endpoint serves the same repository, so any one of them will do."""
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
        self._resize()
        log.info(
            "triton model config read",
            extra={"model_id": model_id, "max_in_flight": self._admission.max_in_flight},
        )
        return True

    def _resize(self) -> None:
        """Default in-flight limit: enough for every endpoint's batcher (see default_in_flight)."""
        if self.served is not None and self._settings.max_in_flight is None:
            endpoints = max(1, len(self._pool.endpoints))
            self._admission.resize(default_in_flight(self.served) * endpoints)

    def _endpoints_changed(self) -> None:
        """Resize admission; forget the counters of endpoints that left (pod IPs never return)."""
        self._resize()
        live = {e.address for e in self._pool.endpoints}
        for labels in [labels for labels in self._counted if labels[0] not in live]:
            self._counted.discard(labels)
            if self._requests is not None:
                self._requests.remove(*labels)

    async def close(self) -> None:
        await self._pool.close()
        close = getattr(self._admission, "close", None)
        if close is not None:
            await close()

    async def ready(self) -> bool:
        """True when any endpoint serves the model (and its config has been read)."""
        if not self._started:
            return False
        return await self._pool.probe_all() and await self._read_served_config()

    def load(self) -> dict[str, int]:
        return self._admission.load()

    def report_hits(self, active: int) -> None:
        """Cache hits this replica is serving, for the shared admission (no-op in process)."""
        report = getattr(self._admission, "report_hits", None)
        if report is not None:
            report(active)

    async def device_info(self) -> dict[str, Any]:
        urls = metrics_urls(
            [e.host for e in self._pool.endpoints],
            self._settings.triton_metrics_port,
            self._settings.triton_metrics_url,
        )
        return await device_info(urls, self._settings.triton_ready_timeout_s)

    def _count(self, endpoint: Endpoint, outcome: str) -> None:
        if self._requests is not None:
            self._requests.labels(endpoint.address, outcome).inc()
            self._counted.add((endpoint.address, outcome))

    async def _infer_balanced(self, inputs: list[Any], outputs: list[Any]) -> Any:
        """One call on the best endpoint; once more on another when the first failure allows it."""
        from tritonclient.utils import InferenceServerException

        tried: set[str] = set()
        failure: Exception | None = None
        for attempt in range(2):
            endpoint = self._pool.pick(exclude=tried)
            if endpoint is None:
                break
            tried.add(endpoint.address)
            try:
                async with self._pool.use(endpoint):
                    result = await endpoint.client.infer(
                        self._settings.triton_model,
                        inputs,
                        outputs=outputs,
                        request_id=request_id_var.get()[:64],
                        client_timeout=self._settings.triton_timeout_s,
                    )
            except InferenceServerException as error:
                message = error.message() or str(error)
                failure = typed_error(message, error.status(), self._admission.retry_after())
                retry = attempt == 0 and retry_elsewhere(message, error.status())
                if retry and not isinstance(failure, Overloaded):
                    endpoint.ready = False  # until the next probe says otherwise
                self._count(endpoint, "retried" if retry else "error")
                log.warning(
                    "triton error: %s",
                    message,
                    extra={"mapped": type(failure).__name__, "endpoint": endpoint.address, "retry": retry},
                )
                if not retry:
                    raise failure from None
                continue
            self._count(endpoint, "ok")
            return result
        raise failure or BackendUnavailable("Triton is unavailable (no endpoint).")

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

        if not self._started or not await self._read_served_config():
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
            result = await self._infer_balanced(inputs, outputs)
            elapsed = time.perf_counter() - start
        scenes = [bytes(item) for item in result.as_numpy("scenes").reshape(-1)]
        if len(scenes) != len(formats):
            raise BackendError(f"Triton returned {len(scenes)} scenes for {len(formats)} formats.")
        metadata_raw = result.as_numpy("metadata").reshape(-1)[0]
        try:
            metadata = parse_metadata(metadata_raw)
        except ValueError as error:
            raise BackendError(f"Triton returned unreadable scene metadata: {error}") from error
        return InferenceResult(dict(zip(formats, scenes, strict=True)), metadata, {"triton": elapsed})
