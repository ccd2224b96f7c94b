"""Test doubles for webhook delivery: a patched resolver, a loopback-only network, scripted receivers.

No test may send a packet beyond loopback, so names are answered by a patched
``socket.getaddrinfo`` and the network backend under httpx refuses (and records) every connection
to a non-loopback address instead of opening it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpcore
import pytest
from httpcore._backends.auto import AutoBackend


class FakeResolver:
    """Answers listed names from scripts (one answer list per call, the last one repeating)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.scripts: dict[str, list[list[str]]] = {}
        self.calls: dict[str, int] = {}
        self.stall: dict[str, tuple[int, float]] = {}  # name -> (from call n, seconds to hang)
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if name not in self.scripts:
                try:
                    ipaddress.ip_address(name.strip("[]"))
                except ValueError:  # an unscripted name: NXDOMAIN, never a real DNS query
                    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
                return real(host, port, *args, **kwargs)
            n = self.calls.get(name, 0)
            self.calls[name] = n + 1
            if name in self.stall and n >= self.stall[name][0]:
                time.sleep(self.stall[name][1])  # a resolver that does not answer in time
            answers = self.scripts[name][min(n, len(self.scripts[name]) - 1)]
            family = {4: socket.AF_INET, 6: socket.AF_INET6}
            return [
                (family[ipaddress.ip_address(ip).version], socket.SOCK_STREAM, 6, "", (ip, int(port or 0)))
                for ip in answers
            ]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def answer(self, name: str, *answers: list[str]) -> None:
        self.scripts[name] = list(answers)


class LoopbackOnlyNetwork:
    """Patches httpcore's network backend: names are resolved through ``socket.getaddrinfo`` (the
    fake), loopback targets are connected, anything else is recorded and refused."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.refused: list[tuple[str, int]] = []
        self.connected: list[tuple[str, int]] = []
        original = AutoBackend.connect_tcp
        network = self

        async def connect_tcp(self: AutoBackend, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
            address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
            if not ipaddress.ip_address(address).is_loopback:
                network.refused.append((address, port))
                raise httpcore.ConnectError(f"test network: {address} is not loopback")
            network.connected.append((address, port))
            return await original(self, address, port, *args, **kwargs)

        monkeypatch.setattr(AutoBackend, "connect_tcp", connect_tcp)


class ScriptedReceiver:
    """A raw HTTP receiver on 127.0.0.1 whose answer is a function of the socket."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.answer = answer
        self.attempts = 0
        self.sent = 0
        self.started: list[float] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._closing = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closing:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            self.attempts += 1
            self.started.append(time.monotonic())
            with contextlib.suppress(OSError):  # the gateway hung up, as a bounded client should
                self.answer(conn)

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self._closing = True
        self.listener.close()


def endless_body(receiver_ref: list[ScriptedReceiver], declared: int) -> Callable[[socket.socket], None]:
    """200 with a huge declared body, written as fast as the gateway reads it."""

    def answer(conn: socket.socket) -> None:
        receiver = receiver_ref[0]
        receiver.send(conn, f"HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\n\r\n".encode())
        block = b"x" * (1 << 20)
        while receiver.sent < declared:
            receiver.send(conn, block)

    return answer


def trickle(receiver_ref: list[ScriptedReceiver], every_s: float) -> Callable[[socket.socket], None]:
    """200 headers at once, then one body byte every ``every_s`` seconds (never finishing soon)."""

    def answer(conn: socket.socket) -> None:
        receiver = receiver_ref[0]
        receiver.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(100000):
            time.sleep(every_s)
            receiver.send(conn, b"x")

    return answer


def scripted(make: Callable[[list[ScriptedReceiver]], Callable[[socket.socket], None]]) -> ScriptedReceiver:
    ref: list[ScriptedReceiver] = []
    receiver = ScriptedReceiver(make(ref))
    ref.append(receiver)
    return receiver
