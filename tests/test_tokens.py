"""Visitor tokens (desk/tokens.py): signed, expiring, and useless to anyone who changes them."""

from __future__ import annotations

import time
import uuid

from desk.tokens import VisitorClaims, issue, verify

SECRET = "a-secret-key-for-these-tests"
DAY = 86400


def claims() -> VisitorClaims:
    return VisitorClaims(tenant_id=uuid.uuid4(), site_id=uuid.uuid4(), visitor_id=uuid.uuid4())


def test_a_token_gives_back_the_claims_it_was_issued_with() -> None:
    issued = claims()
    assert verify(SECRET, issue(SECRET, issued), max_age_seconds=DAY) == issued


def test_a_tampered_token_is_refused() -> None:
    token = issue(SECRET, claims())
    payload, timestamp, signature = token.rsplit(".", 2)
    someone_else = issue(SECRET, claims()).rsplit(".", 2)[0]
    assert verify(SECRET, f"{someone_else}.{timestamp}.{signature}", max_age_seconds=DAY) is None
    assert verify(SECRET, f"{payload}.{timestamp}.{signature[::-1]}", max_age_seconds=DAY) is None
    assert verify(SECRET, f"{payload}.{timestamp}", max_age_seconds=DAY) is None


def test_a_token_older_than_max_age_is_refused() -> None:
    token = issue(SECRET, claims())
    time.sleep(1.1)
    assert verify(SECRET, token, max_age_seconds=0) is None
    assert verify(SECRET, token, max_age_seconds=60) is not None


def test_a_token_signed_with_another_secret_is_refused() -> None:
    assert verify(SECRET, issue("another-secret", claims()), max_age_seconds=DAY) is None


def test_garbage_is_refused() -> None:
    assert verify(SECRET, "not-a-token", max_age_seconds=DAY) is None
    assert verify(SECRET, "", max_age_seconds=DAY) is None
