"""Who the client is, decided once per connection: the peer address, or — when the peer is a
trusted proxy — the address that proxy forwarded.

Why here and not in uvicorn: uvicorn's own proxy-header support trusts `FORWARDED_ALLOW_IPS`
(loopback by default), takes any string it finds as the client (garbage included) and is a
second, undocumented setting. `services.common.server.main` turns it off and
`ClientAddressMiddleware` (the outermost layer of every service's app) does the job instead: it
writes the client into `scope["client"]`, so the rate limiter (REST and WebSocket admission),
uvicorn's WebSocket accept/close log lines and anything else that reads the scope see the same
address, and keeps the TCP peer in `scope["voice.peer"]`.

The rule (the one nginx's `real_ip_recursive` and most proxies use): only when the TCP peer is in
TRUSTED_PROXIES, walk `X-Forwarded-For` from the right, skipping trusted addresses; the first
untrusted one is the client (every entry to its right was appended by a proxy we trust; entries to
its left were written by the client and prove nothing). All entries trusted → the left-most one.
No `X-Forwarded-For` → `X-Real-IP`. The headers are bounded (MAX_HEADER_CHARS) and parsed with
`ipaddress`; anything malformed falls back to the peer, never to the string and never an error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# our nginx sends one X-Forwarded-For; a chain of a dozen hops fits easily, a 64 KiB header is an attack
MAX_HEADER_CHARS = 1024
DEFAULT_TRUSTED = ("127.0.0.1", "::1")  # nginx on the same machine (deploy/nginx's `local` preset)
NONE = "none"  # TRUSTED_PROXIES=none: trust no peer (the setting's empty value means its default)
PEER_KEY = "voice.peer"
UNKNOWN = "unknown"  # no peer address at all (a Unix socket, an in-process test client)
OVERSIZE = "\0oversize"  # a header over MAX_HEADER_CHARS: no address parses from it


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """TRUSTED_PROXIES entries (IPs or CIDRs, host bits allowed) → networks. `none` = no entry.
    Raises ValueError naming the first bad entry (the config reader reports it with the variable)."""
    networks: list[IPNetwork] = []
    for entry in entries:
        if entry.strip().lower() == NONE:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
    return tuple(networks)


def parse_address(text: str) -> IPAddress | None:
    """One forwarded address: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:5678`.
    IPv4-mapped IPv6 is folded to IPv4, so one client has one bucket. None when it is not one."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1 :] and not _is_port(text[end + 1 :])):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        host, port = text.split(":")
        if not _is_port(":" + port):
            return None
        text = host
    if "%" in text:  # a zone id (fe80::1%eth0) names an interface of the proxy, not a client
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isdigit() and 0 < len(text) <= 6 and int(text[1:]) <= 65535


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    """All values of one header joined with ", " (RFC 9110: repeated fields are one list); None
    when absent, `OVERSIZE` when over MAX_HEADER_CHARS (the bound is checked before decoding)."""
    values = [value for key, value in headers if key.lower() == name]
    if not values:
        return None
    if sum(len(v) for v in values) + 2 * (len(values) - 1) > MAX_HEADER_CHARS:
        return OVERSIZE
    return ", ".join(v.decode("latin-1") for v in values)


class TrustedProxies:
    """The TRUSTED_PROXIES set and the rule above."""

    def __init__(self, entries: Iterable[str] = DEFAULT_TRUSTED) -> None:
        self.networks = parse_networks(entries)

    def trusts(self, address: IPAddress | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client(self, peer: str | None, headers: Sequence[tuple[bytes, bytes]]) -> str:
        """The client's address as a canonical string (the peer's when nothing better is known)."""
        if not peer:
            return UNKNOWN
        peer_address = parse_address(peer)
        if peer_address is None:
            return peer
        if not self.trusts(peer_address):
            return str(peer_address)
        forwarded = _header(headers, b"x-forwarded-for")
        if forwarded is not None:
            chosen = self._from_chain(forwarded.split(","))
        else:
            real_ip = _header(headers, b"x-real-ip")
            chosen = parse_address(real_ip) if real_ip is not None else None
        return str(chosen or peer_address)

    def _from_chain(self, entries: list[str]) -> IPAddress | None:
        """Right-most untrusted entry; None (→ the peer) when an entry on the way is malformed."""
        address: IPAddress | None = None
        for entry in reversed(entries):
            address = parse_address(entry)
            if address is None:
                return None
            if not self.trusts(address):
                return address
        return address  # every hop trusted: the left-most (None for an empty header)


class ClientAddressMiddleware:
    """Outermost layer of every app (build_app): `scope["client"]` becomes the client as decided
    above, with port 0 when it came from a header; the TCP peer stays in `scope["voice.peer"]`."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and PEER_KEY not in scope:
            peer = scope.get("client")
            host = self.trusted.client(peer[0] if peer else None, scope.get("headers") or [])
            scope[PEER_KEY] = peer
            if peer and host != peer[0]:
                # the port is the peer's only when the address is too (an IPv4-mapped peer folded)
                same = host == str(parse_address(peer[0]))
                scope["client"] = (host, peer[1] if same else 0)
        await self.app(scope, receive, send)


def client_host(scope: Scope) -> str:
    """The client's address for a rate-limit bucket or a log line: what ClientAddressMiddleware
    decided (the peer where the middleware did not run)."""
    client = scope.get("client")
    return str(client[0]) if client else UNKNOWN
