"""One webhook POST: to an address that was checked, within one deadline, reading little back.

- Pinned: the URL's host was resolved once by :func:`ssrf.resolve_target`; the connection goes
  to one of those addresses (the request URL carries the IP), while the ``Host`` header and the
  TLS SNI/certificate check keep the original name. httpx never resolves the name again, so a
  DNS answer that changes after the check (rebinding) cannot redirect the POST.
- No redirects, no connection reuse (a pooled TLS connection must never serve another name).
- One deadline for the whole attempt (connect, send, headers, body), not per read, so a
  receiver that trickles one byte at a time cannot hold an attempt open.
- The response body is streamed and at most ``RESPONSE_CAP`` bytes are read; the status is all
  that matters.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import httpx

from gateway.service.ssrf import Target

#: bytes of a receiver's response body read at most (then the connection is closed)
RESPONSE_CAP = 64 * 1024


class AttemptFailed(Exception):
    """The attempt got no HTTP status (connect error, deadline, protocol error)."""


def build_client(verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """A client that follows no redirect and keeps no idle connection (each attempt connects);
    ``verify`` is for tests that trust their own certificate authority."""
    return httpx.AsyncClient(
        verify=verify,
        follow_redirects=False,
        trust_env=False,  # never route webhooks through a proxy from the environment
        limits=httpx.Limits(max_keepalive_connections=0),
        timeout=None,  # the per-attempt deadline below bounds everything
    )


def pinned_request(
    client: httpx.AsyncClient, target: Target, address: str, body: bytes, headers: dict[str, str]
) -> httpx.Request:
    """A POST to ``address`` that presents the original host in ``Host`` and in TLS SNI."""
    url = httpx.URL(target.url)
    netloc = urlsplit(target.url).netloc.rpartition("@")[2]  # credentials are refused earlier
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return client.build_request(
        "POST",
        url.copy_with(host=address),
        content=body,
        headers={**headers, "Host": netloc},
        extensions=extensions,
    )


async def _read_capped(response: httpx.Response, cap: int) -> int:
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read >= cap:
            break
    return read


async def post_pinned(
    client: httpx.AsyncClient,
    target: Target,
    body: bytes,
    headers: dict[str, str],
    deadline_s: float,
    cap: int = RESPONSE_CAP,
) -> int:
    """POST to the first checked address that accepts a connection; returns the HTTP status."""
    if not target.addresses:
        raise AttemptFailed("the host has no checked address")
    errors: list[str] = []
    try:
        async with asyncio.timeout(deadline_s):
            for address in target.addresses:
                request = pinned_request(client, target, str(address), body, headers)
                try:
                    response = await client.send(request, stream=True)
                except httpx.ConnectError as error:
                    errors.append(f"ConnectError: {error}")
                    continue  # try the next checked address
                try:
                    await _read_capped(response, cap)
                finally:
                    await response.aclose()
                return response.status_code
    except TimeoutError:
        raise AttemptFailed(f"no complete answer within {deadline_s:g} s") from None
    except httpx.HTTPError as error:
        raise AttemptFailed(f"{type(error).__name__}: {error}"[:300]) from None
    raise AttemptFailed("; ".join(errors)[:300] or "no address accepted the connection")
