"""A real uvicorn server in a thread on 127.0.0.1, for tests that need real sockets (raw HTTP)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from mlsharp.triton.server import free_port


class LiveServer:
    """Serves an ASGI app on a free loopback port until ``close()``."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def raw(self, head: str, body: bytes = b"", timeout_s: float = 3.0) -> tuple[bytes, bool]:
        """Send a request head (and maybe part of a body); return (reply bytes, closed by server).

        Reads until the server closes the connection or ``timeout_s`` passes without data."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s) as sock:
            sock.sendall(head.encode("latin-1") + body)
            reply = b""
            try:
                while chunk := sock.recv(65536):
                    reply += chunk
            except TimeoutError:
                return reply, False
            return reply, True

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
