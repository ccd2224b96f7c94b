"""SSRF guard for webhook targets.

The seed let anyone make the server POST to any URL (internal network probing). A target is
accepted only if it is http(s), has no credentials, and EVERY address its host resolves to is a
public unicast address, unless the host or address is in ``webhook_allow_hosts`` (exact host
names, IPs or CIDR networks). Delivery resolves once right before each attempt, checks every
answer and connects to a checked address only (``webhook_http``), so a DNS answer that changes
between the check and the connection (rebinding) never reaches an internal address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger("gateway.webhooks")
_HOST_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class UnsafeTarget(ValueError):
    """The webhook URL is malformed or points somewhere the gateway must not send to."""


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_ip(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def parse_allow_list(entries: Iterable[str]) -> AllowList:
    """Split entries into networks (IPs/CIDRs) and host names; ValueError names a bad entry."""
    hosts: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in entries:
        text = entry.strip().lower()
        if not text:
            raise ValueError("empty entry in webhook_allow_hosts")
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
            continue
        except ValueError:
            pass
        if not _HOST_RE.fullmatch(text.rstrip(".")):
            raise ValueError(f"webhook_allow_hosts entry {entry!r} is neither a host name, an IP nor a CIDR")
        hosts.add(text.rstrip("."))
    return AllowList(frozenset(hosts), tuple(networks))


#: ranges ``ipaddress`` still calls global but that reach, or may reach, private space:
#: 6to4 (2002::/16) embeds any IPv4 address, site-local (fec0::/10) is deprecated but routed
#: inside sites, NAT64 (64:ff9b::/96, 64:ff9b:1::/48) translates to IPv4, and Teredo (2001::/32)
NON_PUBLIC_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in ("2002::/16", "fec0::/10", "64:ff9b::/96", "64:ff9b:1::/48", "2001::/32")
)


def is_public(address: IPAddress) -> bool:
    """Public unicast only: not private, loopback, link-local, multicast, reserved or unspecified."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    if any(address in network for network in NON_PUBLIC_NETWORKS):
        return False
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def check_url_syntax(url: str) -> tuple[str, int]:
    """Scheme, credentials and host checks that need no DNS; returns (host, port)."""
    if len(url) > 2048:
        raise UnsafeTarget("The webhook URL is longer than 2048 characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeTarget("The webhook URL is not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("The webhook URL must use http or https.")
    if parts.username or parts.password:
        raise UnsafeTarget("The webhook URL must not contain credentials.")
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeTarget("The webhook URL has no host.")
    return host, port or (443 if parts.scheme == "https" else 80)


@dataclass(frozen=True)
class Target:
    """A webhook URL and the addresses that were checked for it: the only ones to connect to."""

    url: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))


async def resolve_target(url: str, allow: AllowList, *, resolve_allowed: bool = True) -> Target:
    """Resolve the URL's host ONCE and check every answer; the caller connects only to these.

    Refusals for host names never name the addresses: they are internal DNS answers, and a
    registration error must not turn the gateway into a resolver for the caller (they go to the
    log instead). One message covers "does not resolve" too, so names cannot be probed either.
    An allow-listed host is not checked; ``resolve_allowed=False`` does not even resolve it.
    """
    host, port = check_url_syntax(url)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        if not allow.allows_ip(literal) and not is_public(literal):
            raise UnsafeTarget(
                f"The webhook host {host!r} is a non-public address ({literal}); "
                "only public targets or hosts in webhook_allow_hosts are allowed."
            )
        return Target(url, host, port, (literal,))
    if allow.allows_host(host) and not resolve_allowed:
        return Target(url, host, port, ())
    addresses = await _resolve(host, port)
    if addresses and (allow.allows_host(host) or all(allow.allows_ip(a) or is_public(a) for a in addresses)):
        return Target(url, host, port, tuple(addresses))
    log.info("webhook host refused", extra={"host": host, "addresses": [str(a) for a in addresses]})
    raise UnsafeTarget(
        f"The webhook host {host!r} does not resolve, or resolves to a non-public address; "
        "only public targets or hosts in webhook_allow_hosts are allowed."
    )


async def check_target(url: str, allow: AllowList) -> None:
    """Raise UnsafeTarget unless every address the URL's host resolves to may be contacted."""
    await resolve_target(url, allow, resolve_allowed=False)
