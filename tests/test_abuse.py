"""The abuse limits' arithmetic (web/edge/abuse.py) on a clock the test moves: token buckets, addresses grouped as
the limits count them, visitors counted whatever their address, and 0 turning a limit off. The limits on real
sockets are tests/security/test_flood.py's and tests/security/test_visitor_limits.py's."""

from __future__ import annotations

import uuid
from dataclasses import replace

from desk import tokens
from desk.settings import Limits
from web.edge.abuse import (
    Buckets,
    EdgeLimits,
    TokenBucket,
    ip_key,
    signed_claims,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lets_a_burst_through_then_one_per_refill_and_says_how_long_to_wait() -> None:
    clock = Clock()
    bucket = TokenBucket(3, 2.0, clock)  # 3 at once, then 2 a second
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]
    assert bucket.take() == 0.5
    clock.now += 0.5
    assert bucket.take() == 0
    assert bucket.take() == 0.5
    clock.now += 60
    assert [bucket.take() for _ in range(4)] == [0, 0, 0, 0.5], "it never holds more than its burst"


def test_buckets_by_key_are_separate_and_refilled_ones_are_forgotten() -> None:
    clock = Clock()
    buckets = Buckets(1, 1.0, clock)
    assert buckets.take("a") == 0 and buckets.take("b") == 0
    assert buckets.take("a") == 1.0
    clock.now += 5
    buckets._prune()
    assert buckets.buckets == {}


def test_addresses_count_as_ipv4_as_they_are_and_ipv6_by_their_64() -> None:
    assert ip_key("203.0.113.7") == "203.0.113.7"
    assert ip_key("2001:db8:1:2:aaaa::1") == ip_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert ip_key("2001:db8:1:3::1") != ip_key("2001:db8:1:2::1")
    assert ip_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert ip_key(None) == "unknown"


def test_open_sockets_are_counted_per_address_and_given_back_when_closed() -> None:
    limits = EdgeLimits(replace(Limits(), sockets_per_ip=2))
    assert limits.open_socket("10.0.0.1") is None and limits.open_socket("10.0.0.1") is None
    refused = limits.open_socket("10.0.0.1")
    assert refused is not None and refused.limit == "sockets_per_ip"
    assert limits.open_socket("10.0.0.2") is None
    limits.close_socket("10.0.0.1")
    assert limits.open_socket("10.0.0.1") is None
    for _ in range(3):
        limits.close_socket("10.0.0.1")
    assert "10.0.0.1" not in limits.sockets.open


def test_new_connections_per_minute_refill_over_the_minute() -> None:
    clock = Clock()
    limits = EdgeLimits(replace(Limits(), connections_per_ip_per_minute=60), clock)
    assert all(limits.connect("10.0.0.1") is None for _ in range(60))
    refused = limits.connect("10.0.0.1")
    assert refused is not None and refused.limit == "connections_per_ip_per_minute" and refused.retry_after == 1
    clock.now += 1
    assert limits.connect("10.0.0.1") is None


def test_a_limit_of_zero_is_off() -> None:
    off = replace(Limits(), connections_per_ip_per_minute=0, sockets_per_ip=0, sessions_per_ip_per_hour=0)
    off = replace(off, frames_per_second=0, connections_per_visitor_per_minute=0, sockets_per_visitor=0)
    limits = EdgeLimits(off)
    assert all(limits.connect("10.0.0.1") is None and limits.open_socket("10.0.0.1") is None for _ in range(1000))
    one = uuid.uuid4()
    assert all(limits.connect_visitor(one) is None and limits.open_visitor_socket(one) is None for _ in range(1000))
    assert limits.frames() is None
    assert all(limits.new_session("10.0.0.1") is None for _ in range(1000))


def test_new_sessions_per_hour_say_when_the_next_one_is_allowed() -> None:
    limits = EdgeLimits(replace(Limits(), sessions_per_ip_per_hour=2))
    assert limits.new_session("10.0.0.1") is None and limits.new_session("10.0.0.1") is None
    refused = limits.new_session("10.0.0.1")
    assert refused is not None and refused.limit == "sessions_per_ip_per_hour"
    assert 1790 <= refused.retry_after <= 1800  # 2 an hour: one every 30 minutes
    assert limits.new_session("10.0.0.2") is None


def test_a_visitors_open_sockets_are_counted_whatever_their_address_and_given_back_when_closed() -> None:
    limits = EdgeLimits(replace(Limits(), sockets_per_visitor=2))
    visitor, other = uuid.uuid4(), uuid.uuid4()
    assert limits.open_visitor_socket(visitor) is None and limits.open_visitor_socket(visitor) is None
    refused = limits.open_visitor_socket(visitor)
    assert refused is not None and refused.limit == "sockets_per_visitor" and refused.retry_after == 5
    assert refused.message == "at most 2 connections to one chat at once"
    assert limits.open_visitor_socket(other) is None, "another visitor has its own count"
    limits.close_visitor_socket(visitor)
    assert limits.open_visitor_socket(visitor) is None
    for _ in range(3):
        limits.close_visitor_socket(visitor)
    assert str(visitor) not in limits.visitor_sockets.open


def test_a_visitors_new_connections_per_minute_refill_over_the_minute_and_other_visitors_keep_theirs() -> None:
    clock = Clock()
    limits = EdgeLimits(replace(Limits(), connections_per_visitor_per_minute=30), clock)
    visitor = uuid.uuid4()
    assert all(limits.connect_visitor(visitor) is None for _ in range(30))
    refused = limits.connect_visitor(visitor)
    assert refused is not None and refused.limit == "connections_per_visitor_per_minute"
    assert refused.retry_after == 2  # 30 a minute: one every 2 seconds
    assert limits.connect_visitor(uuid.uuid4()) is None
    clock.now += 2
    assert limits.connect_visitor(visitor) is None


def test_the_per_address_and_per_visitor_counts_are_separate() -> None:
    limits = EdgeLimits(replace(Limits(), sockets_per_ip=1, sockets_per_visitor=1))
    visitor = uuid.uuid4()
    assert limits.open_socket("10.0.0.1") is None and limits.open_visitor_socket(visitor) is None
    assert limits.open_socket("10.0.0.2") is None, "a visitor's socket does not spend another address's count"
    refused = limits.open_visitor_socket(visitor)
    assert refused is not None and refused.limit == "sockets_per_visitor"


def test_a_token_names_its_visitor_only_when_its_signature_holds() -> None:
    visitor = uuid.uuid4()
    token = tokens.issue("secret", tokens.VisitorClaims(uuid.uuid4(), uuid.uuid4(), visitor))
    assert signed_claims("secret", token, Limits()).visitor_id == visitor
    assert signed_claims("another secret", token, Limits()) is None
    assert signed_claims("secret", token + "x", Limits()) is None
    assert signed_claims("secret", "", Limits()) is None
