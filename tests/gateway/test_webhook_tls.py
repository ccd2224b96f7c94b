"""Issue 13 item 2, over TLS: the pinned connection presents the URL's name in SNI and verifies
the certificate against that name, not against the IP it connects to (loopback only)."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from gateway.service.ssrf import Target
from gateway.service.webhook_http import AttemptFailed, build_client, post_pinned

pytestmark = pytest.mark.needs("openssl")


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class TlsReceiver:
    """Answers 204 over TLS on 127.0.0.1 and records the SNI name of each handshake."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.server_names: list[str | None] = []
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        request += conn.recv(65536)
                    head, _, body = request.partition(b"\r\n\r\n")
                    length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                    while length and len(body) < int(length.group(1)):
                        body += conn.recv(65536)  # all of it: closing on unread bytes resets
                    conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            except (OSError, ssl.SSLError):
                pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def tls(tmp_path: Path):
    cert, key = self_signed(tmp_path, "hooks.example")
    receiver = TlsReceiver(cert, key)
    trust = ssl.create_default_context(cafile=str(cert))
    yield receiver, trust
    receiver.close()


def post(url: str, trust: ssl.SSLContext) -> int:
    parsed = httpx.URL(url)
    target = Target(url, parsed.host, parsed.port or 443, (ipaddress.ip_address("127.0.0.1"),))

    async def run() -> int:
        async with build_client(verify=trust) as client:
            return await post_pinned(client, target, b"{}", {"Content-Type": "application/json"}, 5.0)

    return asyncio.run(run())


def test_sni_and_certificate_use_the_name(tls) -> None:
    receiver, trust = tls
    assert post(f"https://hooks.example:{receiver.port}/in", trust) == 204
    assert receiver.server_names == ["hooks.example"]


def test_a_certificate_for_another_name_is_refused(tls) -> None:
    receiver, trust = tls
    with pytest.raises(AttemptFailed, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        post(f"https://other.example:{receiver.port}/in", trust)
    assert receiver.server_names == ["other.example"]
