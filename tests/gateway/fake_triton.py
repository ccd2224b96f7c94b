"""A small in-process gRPC server speaking Triton's protocol, for TritonBackend unit tests.

It implements just what the gateway calls (ServerReady, ModelReady, ModelConfig, ModelInfer) with
the ensemble's tensor names, so the real ``tritonclient.grpc.aio`` client, message limits,
deadlines and error mapping are exercised without a tritonserver. End-to-end tests against the
real server are in test_triton.py.
"""

from __future__ import annotations

import struct
import threading
import time
from concurrent import futures

import grpc
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from mlsharp.errors import InvalidImageError
from mlsharp.formats import build_metadata, metadata_json_bytes
from mlsharp.gaussians import CameraInfo
from mlsharp.triton.backend import error_text
from tests.gateway.support import tiny_scene


def unpack_bytes(raw: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return items


def pack_bytes(value: bytes) -> bytes:
    return struct.pack("<I", len(value)) + value


class FakeTriton(service_pb2_grpc.GRPCInferenceServiceServicer):  # method names are gRPC's
    """Scenes = b"TRITON" + format + padding of ``scene_bytes``, one per requested format; images
    starting with b"BAD" fail the way a python-backend model fails (INTERNAL, the models' JSON
    error document after Triton's ensemble prefix)."""

    def __init__(self, scene_bytes: int = 1024, delay_s: float = 0.0, model_id: str = "sharp_test") -> None:
        self.scene_bytes = scene_bytes
        self.delay_s = delay_s
        self.model_id = model_id
        self.ready = True
        self.requests: list[dict[str, object]] = []
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)],
        )
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.url = f"127.0.0.1:{self.port}"
        self._lock = threading.Lock()

    def __enter__(self) -> FakeTriton:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)

    def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=self.ready)

    def ModelReady(self, request, context):
        return service_pb2.ModelReadyResponse(ready=self.ready and request.name == "mlsharp")

    def ModelConfig(self, request, context):
        config = model_config_pb2.ModelConfig(name=request.name)
        if request.name == "sharp" and self.model_id:  # "" = a repository without the parameter
            config.parameters["model_id"].string_value = self.model_id
            config.max_batch_size = 4
            config.instance_group.add(count=1)
        return service_pb2.ModelConfigResponse(config=config)

    def ModelInfer(self, request, context):
        if not self.ready:
            context.abort(grpc.StatusCode.UNAVAILABLE, "Request for unknown model: 'mlsharp' is not ready")
        values: dict[str, object] = {}
        for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True):
            if tensor.datatype == "BYTES":
                items = unpack_bytes(raw)
                values[tensor.name] = items if tensor.name == "formats" else items[0]
            else:
                values[tensor.name] = struct.unpack("<f", raw)[0]
        values["request_id"] = request.id
        with self._lock:
            self.requests.append(values)
        if self.delay_s:
            time.sleep(self.delay_s)
        image = values["image_bytes"]
        assert isinstance(image, bytes)
        if image.startswith(b"BAD"):
            bad = InvalidImageError("The upload is not a readable image (truncated PNG data).")
            context.abort(grpc.StatusCode.INTERNAL, "in ensemble 'mlsharp', " + error_text(bad))
        if image.startswith(b"CRASH"):
            context.abort(grpc.StatusCode.INTERNAL, "in ensemble 'mlsharp', " + error_text(KeyError("x")))
        formats = values["formats"]
        assert isinstance(formats, list)
        scenes = b"".join(pack_bytes(b"TRITON" + fmt + b"\0" * self.scene_bytes) for fmt in formats)
        metadata = metadata_json_bytes(  # the core's document, as the real postprocess sends it
            build_metadata(
                tiny_scene(image), CameraInfo(10.0, 7, 5), model_id=self.model_id, random_weights=True
            )
        )
        response = service_pb2.ModelInferResponse(model_name="mlsharp", id=request.id)
        response.outputs.add(name="scenes", datatype="BYTES", shape=[1, len(formats)])
        response.outputs.add(name="metadata", datatype="BYTES", shape=[1, 1])
        response.raw_output_contents.extend([scenes, pack_bytes(metadata)])
        return response
