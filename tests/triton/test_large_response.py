"""A ~70 MB response over gRPC and HTTP: the message sizes a full-size scene needs (the ``full``
preset's PLY is 1,179,648 gaussians x 56 bytes, 66 MB).

Why a model of its own that only returns bytes: what is tested is message-size handling (the
python backend's shared memory, whose regions grow from 16 MiB; one gRPC message with raised
limits; gRPC's 4 MiB default refusing it), not the network that fills the message. Exporting the
1536 px preset for it cost ~1.5 min; this model loads in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from mlsharp.triton.config import DataType, InstanceGroup, ModelConfig, Tensor
from tests.requires import require_triton
from tests.triton import support

pytestmark = [pytest.mark.triton, pytest.mark.slow]

RESPONSE_BYTES = 70_000_000  # over 64 MiB, as a full-size PLY is close to it
MODEL = "blob"
#: returns ``size_bytes`` bytes of a known pattern (byte i is i % 251) as one BYTES element
BLOB_MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            size = int(pb_utils.get_input_tensor_by_name(request, "size_bytes").as_numpy().reshape(-1)[0])
            blob = (bytes(range(251)) * (size // 251 + 1))[:size]
            out = pb_utils.Tensor("blob", np.array([blob], dtype=np.object_))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""


def _expected(size: int) -> bytes:
    return (bytes(range(251)) * (size // 251 + 1))[:size]


@pytest.fixture(scope="module")
def blob_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from mlsharp.triton.server import TritonServer

    require_triton()
    repository = tmp_path_factory.mktemp("blob-repository")
    config = ModelConfig(
        name=MODEL,
        max_batch_size=0,
        inputs=(Tensor("size_bytes", DataType.INT64, (1,)),),
        outputs=(Tensor("blob", DataType.STRING, (1,)),),
        backend="python",
        instance_groups=(InstanceGroup(count=1),),
    )
    (repository / MODEL / "1").mkdir(parents=True)
    (repository / MODEL / "config.pbtxt").write_text(config.to_pbtxt())
    (repository / MODEL / "1" / "model.py").write_text(BLOB_MODEL_PY)
    # Triton 2.51 has kept a model "live" after a client refused its response; a stop then waits the
    # whole exit timeout. Clean stops are test_server_lifecycle.py's job; bound the wait here.
    with TritonServer(repository, exit_timeout_s=3) as server:
        yield server


def _grpc_infer(client: Any, size: int) -> bytes:
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput("size_bytes", [1], "INT64")
    tensor.set_data_from_numpy(np.array([size], dtype=np.int64))
    result = client.infer(MODEL, [tensor], client_timeout=300)
    return bytes(result.as_numpy("blob")[0])


def test_a_70_mb_response_comes_back_over_grpc_with_raised_limits(blob_server) -> None:
    client = support.grpc_client(blob_server.grpc_url)  # max send/receive raised to 1 GiB
    blob = _grpc_infer(client, RESPONSE_BYTES)
    client.close()
    assert len(blob) == RESPONSE_BYTES
    assert blob == _expected(RESPONSE_BYTES)


def test_a_70_mb_response_comes_back_over_http(blob_server) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(blob_server.http_url, network_timeout=300)
    tensor = httpclient.InferInput("size_bytes", [1], "INT64")
    tensor.set_data_from_numpy(np.array([RESPONSE_BYTES], dtype=np.int64))
    output = httpclient.InferRequestedOutput("blob", binary_data=True)
    blob = bytes(client.infer(MODEL, [tensor], outputs=[output]).as_numpy("blob")[0])
    client.close()
    assert blob == _expected(RESPONSE_BYTES)


def test_grpcs_default_4_mib_receive_limit_refuses_it(blob_server) -> None:
    """Why the limits are raised: a client left at gRPC's 4 MiB default cannot take the scene."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(
        blob_server.grpc_url, channel_args=[("grpc.max_receive_message_length", 4 * 1024 * 1024)]
    )
    assert len(_grpc_infer(client, 1_000_000)) == 1_000_000  # a small response still passes
    with pytest.raises(InferenceServerException) as refused:
        _grpc_infer(client, 5 * 1024 * 1024)
    client.close()
    assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED", str(refused.value)
    assert "larger than max" in refused.value.message()
