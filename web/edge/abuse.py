"""Abuse limits for visitors' connections (docs/operations.md, "Abuse limits"): token buckets in this process.

Per client address (as web/security.py resolved it behind trusted proxies; an IPv6 address by its /64, as for
logins): new connections per minute (sockets and long-polls), sockets open at once, and new visitor sessions per
hour (web/widget_api). Per visitor (the one a validly signed token names, whatever the address): new connections per
minute and sockets open at once, so that one visitor's token used from many addresses is stopped before it costs a
query. Per socket: frames per second with a small burst. A limit set to 0 is off.

The counts live in memory, so each `web` process keeps its own: behind a load balancer with N of them an address
may get up to N times each limit. That is the price of a check that costs no round trip on every frame.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from desk import metrics, protocol, tokens
from desk.settings import Limits

# A table of buckets prunes its full (forgotten) buckets when it grows past this many keys, at most once a second.
PRUNE_ABOVE = 10_000


def ip_key(address: str | None) -> str:
    """An IPv4 address as it is; an IPv6 one by its /64, which one machine usually has all of. Logins' limits
    (web/auth/limits.py) group addresses by this too."""
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass(frozen=True)
class Limited:
    """A connection over one of its limits: which one (a Limits field), what to tell the client, when to retry."""

    limit: str
    message: str
    retry_after: int

    def __post_init__(self) -> None:
        metrics.RATE_LIMITED.labels(self.limit).inc()  # made only when a client is refused

    def frame(self) -> dict[str, Any]:
        return protocol.rate_limited(self.limit, self.message, self.retry_after)

    def body(self) -> dict[str, Any]:
        """The JSON body of an HTTP 429."""
        return {"error": protocol.RATE_LIMITED, "limit": self.limit, "message": self.message}


class TokenBucket:
    """`burst` tokens, refilled at `per_second`; each event takes one. Not thread-safe (one socket's own)."""

    __slots__ = ("burst", "per_second", "tokens", "at", "clock")

    def __init__(self, burst: float, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.per_second, self.clock = burst, per_second, clock
        self.tokens, self.at = float(burst), clock()

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_second)
        self.at = now

    def take(self) -> float:
        """0 when a token was taken; otherwise the seconds until one will be there (nothing is taken)."""
        self._refill(self.clock())
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.per_second


class Buckets:
    """Token buckets by key, shared by threads (Flask's) or tasks; a bucket that has refilled is forgotten."""

    def __init__(self, burst: int, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.per_second, self.clock = burst, per_second, clock
        self.buckets: dict[str, TokenBucket] = {}
        self.lock = threading.Lock()
        self.pruned_at = clock()

    def take(self, key: str) -> float:
        with self.lock:
            bucket = self.buckets.get(key)
            if bucket is None:
                bucket = self.buckets[key] = TokenBucket(self.burst, self.per_second, self.clock)
            wait = bucket.take()
            if len(self.buckets) > PRUNE_ABOVE:
                self._prune()
            return wait

    def _prune(self) -> None:
        now = self.clock()
        if now - self.pruned_at < 1:
            return
        self.pruned_at = now
        full = [k for k, b in self.buckets.items() if b.tokens + (now - b.at) * b.per_second >= b.burst]
        for key in full:
            del self.buckets[key]


def _take(buckets: Buckets | None, key: str, limit: str, message: str) -> Limited | None:
    """Take a token from `key`'s bucket: None when there was one (or the limit is off), else why not."""
    wait = buckets.take(key) if buckets is not None else 0.0
    return Limited(limit, message, _seconds(wait)) if wait else None


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


def _per_minute(per_minute: int, clock: Callable[[], float]) -> Buckets | None:
    """A bucket of `per_minute` at once, refilled over the minute; None when the limit is off."""
    return Buckets(per_minute, per_minute / 60, clock) if per_minute > 0 else None


class OpenCounts:
    """How many sockets each key (an address, a visitor) has open; one event loop's, so no lock."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open: dict[str, int] = {}

    def add(self, key: str) -> bool:
        """Count one more open socket of `key`, or False (nothing counted) when it already has `cap`."""
        if self.cap > 0 and self.open.get(key, 0) >= self.cap:
            return False
        self.open[key] = self.open.get(key, 0) + 1
        return True

    def remove(self, key: str) -> None:
        left = self.open.get(key, 0) - 1
        if left > 0:
            self.open[key] = left
        else:
            self.open.pop(key, None)


def signed_claims(secret_key: str, token: str, limits: Limits) -> tokens.VisitorClaims | None:
    """What a token says when its signature holds and it has not expired: CPU only, no query, so the per-visitor
    limits are checked before `VisitorLink.admit` (web/edge/thread.py) reads the visitor and its site."""
    return tokens.verify(secret_key, token, limits.visitor_token_days * 86400)


class EdgeLimits:
    """The edge's per-address and per-visitor limits, shared by every visitor connection of this process (one
    event loop)."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.connections = _per_minute(limits.connections_per_ip_per_minute, clock)
        self.sockets = OpenCounts(limits.sockets_per_ip)
        self.visitor_connections = _per_minute(limits.connections_per_visitor_per_minute, clock)
        self.visitor_sockets = OpenCounts(limits.sockets_per_visitor)
        per_hour = limits.sessions_per_ip_per_hour
        self.sessions = Buckets(per_hour, per_hour / 3600, clock) if per_hour > 0 else None
        self.clock = clock
        self.told: dict[tuple[str, str], float] = {}  # (address, limit) -> until when it was told to stay away

    def tell(self, address: str | None, limited: Limited) -> None:
        """`address` is being told, in an error frame, to wait `limited.retry_after` seconds for `limited`."""
        now = self.clock()
        if len(self.told) > PRUNE_ABOVE:
            self.told = {key: until for key, until in self.told.items() if until > now}
        self.told[(ip_key(address), limited.limit)] = now + limited.retry_after

    def was_told(self, address: str | None, limited: Limited) -> bool:
        """Is `address` back over the same limit before the seconds it was told to wait are up?"""
        return self.clock() < self.told.get((ip_key(address), limited.limit), float("-inf"))

    def connect(self, address: str | None) -> Limited | None:
        """A new connection (a socket or a long-poll request) from `address`: None when it may go on."""
        message = "too many new connections from your network; reconnect later"
        return _take(self.connections, ip_key(address), "connections_per_ip_per_minute", message)

    def new_session(self, address: str | None) -> Limited | None:
        """A session request for a new visitor from `address` (web/edge/session.py; a resumed visitor is not
        counted, so reconnecting is free): None when it may go on. Called from the session's thread."""
        message = "too many new chat sessions from your network; try again later"
        return _take(self.sessions, ip_key(address), "sessions_per_ip_per_hour", message)

    def open_socket(self, address: str | None) -> Limited | None:
        """Count a socket as open (the caller calls `close_socket` when it ends), or say why it may not open."""
        if self.sockets.add(ip_key(address)):
            return None
        cap = self.limits.sockets_per_ip
        return Limited("sockets_per_ip", f"at most {cap} chat connections from one network at once", 5)

    def close_socket(self, address: str | None) -> None:
        self.sockets.remove(ip_key(address))

    def connect_visitor(self, visitor_id: uuid.UUID) -> Limited | None:
        """A new connection (a socket or a long-poll request) with a validly signed token naming `visitor_id`,
        from any address: None when it may go on. Checked before the token's visitor is read from PostgreSQL."""
        message = "too many new connections for this chat; reconnect later"
        return _take(self.visitor_connections, str(visitor_id), "connections_per_visitor_per_minute", message)

    def open_visitor_socket(self, visitor_id: uuid.UUID) -> Limited | None:
        """Count a socket of `visitor_id` as open (the caller calls `close_visitor_socket` when it ends), or say
        why it may not open."""
        if self.visitor_sockets.add(str(visitor_id)):
            return None
        cap = self.limits.sockets_per_visitor
        return Limited("sockets_per_visitor", f"at most {cap} connections to one chat at once", 5)

    def close_visitor_socket(self, visitor_id: uuid.UUID) -> None:
        self.visitor_sockets.remove(str(visitor_id))

    def frames(self) -> TokenBucket | None:
        """A new socket's own frame budget, or None when that limit is off."""
        if self.limits.frames_per_second <= 0:
            return None
        return TokenBucket(max(1, self.limits.frame_burst), self.limits.frames_per_second, self.clock)

    def too_many_frames(self, wait: float) -> Limited:
        return Limited(
            "frames_per_second",
            f"more than {self.limits.frames_per_second} frames a second; reconnect and slow down",
            _seconds(wait),
        )


async def capped_body(request: Request, cap: int) -> bytes | None:
    """A request's body, or None when it is over `cap` bytes: told by its Content-Length before anything is read,
    and counted as it comes, so a body without a length is capped too."""
    if int(request.headers.get("content-length") or 0) > cap:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            return None
    return body
