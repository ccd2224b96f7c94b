"""Client-side balancing over Triton endpoints: one gRPC client per address, re-resolved.

kube-proxy balances a ClusterIP Service per *connection*, and each gateway holds one long-lived
HTTP/2 connection, so two gateways used to feed at most two Triton pods. Here ``triton_url`` is a
comma-separated list of ``host:port``; an IP literal is one endpoint, a name (e.g. a headless
Service, whose DNS answers one A/AAAA record per ready pod) becomes one endpoint per address and
is re-resolved every ``triton_resolve_interval_s``. New addresses get a client; an address that
leaves DNS is removed from the pick at once and its client closes when its last in-flight
request has finished (a pod in its preStop/drain still completes what it holds).

Pick: least in flight among ready endpoints, ties broken round robin. Under light load that is
plain round robin; when one pod slows down (a long postprocess, a noisy neighbour, a TensorRT
warm-up) its requests pile up and it gets fewer new ones, which round robin alone would not do.
Each gateway only sees its own in-flight counts, which is enough: every gateway spreads its own
share evenly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("gateway.backend.endpoints")

#: (host, port) -> the addresses it resolves to now; raises OSError when it cannot resolve
Resolver = Callable[[str, int], Sequence[str]]


def parse_targets(url: str) -> list[tuple[str, int]]:
    """``"a:8001, [::1]:8001"`` -> [("a", 8001), ("::1", 8001)]; ValueError names a bad entry."""
    targets = []
    for raw in url.split(","):
        entry = raw.strip()
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"Triton endpoint {entry!r} is not host:port")
        targets.append((host, int(port)))
    if not targets:
        raise ValueError("triton_url names no endpoint")
    return targets


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def join_address(host: str, port: int) -> str:
    """``host:port`` with IPv6 literals in brackets, as gRPC targets want them."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def system_resolver(host: str, port: int) -> list[str]:
    """A and AAAA records via getaddrinfo, in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(eq=False)
class Endpoint:
    """One Triton address and its client; ``ready`` is the last probe's (or failure's) verdict."""

    address: str
    host: str
    client: Any
    ready: bool = False
    in_flight: int = 0
    removed: bool = False


class EndpointPool:
    """The live endpoints of ``triton_url``; ``connect(address)`` builds a client, ``probe``
    says whether an endpoint serves the model (called at every refresh and by :meth:`probe_all`)."""

    def __init__(
        self,
        url: str,
        connect: Callable[[str], Any],
        probe: Callable[[Endpoint], Awaitable[bool]],
        *,
        resolver: Resolver = system_resolver,
        interval_s: float = 10.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.targets = parse_targets(url)
        self._connect = connect
        self._probe = probe
        self._resolver = resolver
        self.interval_s = interval_s
        self._on_change = on_change
        self._live: dict[str, Endpoint] = {}
        self._turn = 0
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._live.values())

    @property
    def dynamic(self) -> bool:
        """True when some target is a name, so DNS may change the set."""
        return any(not is_ip(host) for host, _ in self.targets)

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_forever(), name="triton-endpoints")

    async def _resolve(self) -> dict[str, str] | None:
        """address -> host for every target; None for a name that failed (keep what we had)."""
        found: dict[str, str] = {}
        for host, port in self.targets:
            if is_ip(host):
                found[join_address(host, port)] = host
                continue
            try:
                addresses = await asyncio.to_thread(self._resolver, host, port)
            except OSError as error:
                log.warning("cannot resolve Triton endpoint %s: %s; keeping the last answer", host, error)
                return None
            if not addresses:
                log.warning("Triton endpoint %s resolved to no address; keeping the last answer", host)
                return None
            for address in addresses:
                found[join_address(address, port)] = address
        return found

    async def refresh(self) -> None:
        """Re-resolve (add new addresses, retire vanished ones), then probe every endpoint."""
        found = await self._resolve()
        changed = False
        if found is not None:
            for address, host in found.items():
                if address not in self._live:
                    self._live[address] = Endpoint(address, host, self._connect(address))
                    log.info("triton endpoint added", extra={"endpoint": address})
                    changed = True
            for address in [a for a in self._live if a not in found]:
                self._retire(self._live.pop(address))
                changed = True
        await self.probe_all()
        if changed and self._on_change is not None:
            self._on_change()

    async def probe_all(self) -> bool:
        """Probe every live endpoint concurrently; True when at least one is ready."""
        endpoints = self.endpoints
        results = await asyncio.gather(*(self._probe(e) for e in endpoints), return_exceptions=True)
        for endpoint, result in zip(endpoints, results, strict=True):
            endpoint.ready = result is True
        return any(e.ready for e in endpoints)

    def _retire(self, endpoint: Endpoint) -> None:
        endpoint.removed = True
        log.info(
            "triton endpoint removed", extra={"endpoint": endpoint.address, "in_flight": endpoint.in_flight}
        )
        if endpoint.in_flight == 0:
            self._close_later(endpoint)

    def _close_later(self, endpoint: Endpoint) -> None:
        task = asyncio.create_task(endpoint.client.close(), name=f"close-{endpoint.address}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing the Triton endpoints failed")

    def pick(self, exclude: set[str] | frozenset[str] = frozenset()) -> Endpoint | None:
        """Least in flight among ready endpoints (round robin on ties); when none is known ready,
        any live one (a stale verdict must not stop traffic: its error then says why)."""
        candidates = [e for e in self._live.values() if e.address not in exclude]
        ready = [e for e in candidates if e.ready]
        pool = ready or candidates
        if not pool:
            return None
        start = self._turn % len(pool)
        self._turn += 1
        rotated = pool[start:] + pool[:start]
        return min(rotated, key=lambda e: e.in_flight)

    @asynccontextmanager
    async def use(self, endpoint: Endpoint) -> AsyncIterator[Endpoint]:
        """Count a request in flight on ``endpoint``; a retired endpoint closes after its last one."""
        endpoint.in_flight += 1
        try:
            yield endpoint
        finally:
            endpoint.in_flight -= 1
            if endpoint.removed and endpoint.in_flight == 0:
                self._close_later(endpoint)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for endpoint in self._live.values():
            self._close_later(endpoint)
        self._live.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
