"""Login brute force (issue 7): attempts are limited per account and per address, with growing delays and a
temporary lock, by every web process alike (the counts are in PostgreSQL); every attempt is in the audit log.

Web processes with their own settings: `strict` locks an account for a minute (the brute force) and an address
after 20 failures; `brief` locks an account after 3 failures for 2 seconds (what happens when a lock ends);
`patient` makes attempts wait from the first failure, at most 4 seconds (the growing delay, with waits longer
than a request takes on a busy machine).
Each test speaks from its own loopback address (127.x.y.z), so the address limits of one test never meet another's.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from desk.db import system_session
from desk.models import AuditLog
from tests.admin.conftest import USER_AGENT, Person, enrolment_of
from tests.conftest import Stack
from tests.factories import new_people

STRICT = {
    "DESKBELL_LOGIN_LOCKOUT_SECONDS": "60",
    "DESKBELL_LOGIN_MAX_FAILURES": "10",
    "DESKBELL_LOGIN_IP_MAX_FAILURES": "20",
}
BRIEF = {"DESKBELL_LOGIN_LOCKOUT_SECONDS": "2", "DESKBELL_LOGIN_MAX_FAILURES": "3", "DESKBELL_LOGIN_DELAY_AFTER": "10"}
PATIENT = {"DESKBELL_LOGIN_DELAY_AFTER": "1", "DESKBELL_LOGIN_DELAY_MAX_SECONDS": "4"}


@pytest.fixture(scope="module")
def strict(stack: Stack) -> Iterator[str]:
    with stack.another_web(**STRICT) as url:
        yield url


@pytest.fixture(scope="module")
def brief(stack: Stack) -> Iterator[str]:
    with stack.another_web(**BRIEF) as url:
        yield url


@pytest.fixture(scope="module")
def patient(stack: Stack) -> Iterator[str]:
    with stack.another_web(**PATIENT) as url:
        yield url


def new_address() -> str:
    return f"127.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}"


class Browser(Person):
    """A browser on a loopback address of its own."""

    def __init__(self, base_url: str, address: str | None = None) -> None:
        super().__init__(base_url)
        self.address = address or new_address()
        transport = httpx.HTTPTransport(local_address=self.address)
        self.client = httpx.Client(
            base_url=base_url, timeout=30, headers={"User-Agent": USER_AGENT}, transport=transport
        )

    def try_login(self, email: str, password: str) -> httpx.Response:
        self.anonymous()
        return self.client.post("/login", data={"email": email, "password": password, "csrf_token": self.token})

    def logged_in(self) -> bool:
        return self.client.get("/console").status_code == 200


def audit_of(email: str, *actions: str) -> list[AuditLog]:
    with system_session() as db:
        query = select(AuditLog).where(AuditLog.detail["email"].astext == email).order_by(AuditLog.id)
        if actions:
            query = query.where(AuditLog.action.in_(actions))
        return list(db.scalars(query))


@pytest.fixture
def agent(stack: Stack) -> dict[str, Any]:
    return new_people()["agent"]  # type: ignore[return-value]


def test_100_wrong_passwords_lock_the_account_and_every_attempt_is_in_the_audit_log(
    strict: str, agent: dict[str, Any]
) -> None:
    attacker = Browser(strict)
    answers = [attacker.try_login(agent["email"], f"guess-{n}") for n in range(100)]

    assert all(a.status_code in (401, 429) for a in answers)
    assert not attacker.logged_in()
    # After ten failures (the first three checked at once, then too soon for the growing delay) it is locked.
    assert [a.status_code for a in answers[10:]] == [429] * 90
    assert re.search(r"Too many attempts, try again in (\d\d seconds|1 minute)\.", answers[-1].text)
    assert int(answers[-1].headers["Retry-After"]) <= 60

    failures = audit_of(agent["email"], "login.failure")
    assert len(failures) == 100
    assert {(f.ip, f.user_agent) for f in failures} == {(attacker.address, USER_AGENT)}
    assert all(f.actor_id == agent["id"] for f in failures)
    reasons = [f.detail.get("reason", "password") for f in failures]
    assert reasons[:3] == ["password"] * 3 and reasons[10:] == ["locked"] * 90
    [lock] = audit_of(agent["email"], "login.locked")
    assert lock.detail["scope"] == "account" and lock.detail["failures"] == 10 and lock.ip == attacker.address

    # The right password, even from another address, does not log in while the lock lasts.
    owner = Browser(strict)
    answer = owner.try_login(agent["email"], agent["password"])
    assert answer.status_code == 429 and "Too many attempts" in answer.text
    assert not owner.logged_in()
    assert audit_of(agent["email"], "login.failure")[-1].detail.get("reason") == "locked"


def test_a_lock_made_by_one_web_process_holds_on_every_other(
    strict: str, brief: str, stack: Stack, agent: dict[str, Any]
) -> None:
    attacker = Browser(strict)
    for n in range(12):
        attacker.try_login(agent["email"], f"guess-{n}")

    for url in (brief, stack.base_url):
        someone = Browser(url)
        assert someone.try_login(agent["email"], agent["password"]).status_code == 429
        assert not someone.logged_in()


def test_the_right_password_works_again_once_the_lock_has_ended(brief: str, agent: dict[str, Any]) -> None:
    browser = Browser(brief)
    answers = [browser.try_login(agent["email"], f"guess-{n}") for n in range(3)]
    assert [a.status_code for a in answers] == [401, 401, 429]
    assert "Too many attempts, try again in 2 seconds." in answers[-1].text

    time.sleep(2.5)  # BRIEF's lock
    assert browser.try_login(agent["email"], agent["password"]).status_code == 302
    assert browser.logged_in()
    assert audit_of(agent["email"], "login.success")


def test_each_attempt_after_a_failure_must_wait_longer(patient: str, agent: dict[str, Any]) -> None:
    browser = Browser(patient)
    waits = []
    for n in range(7):  # waits of 1, 2, 4, 4... seconds after each failure: soon longer than a request takes
        answer = browser.try_login(agent["email"], f"guess-{n}")
        assert answer.status_code in (401, 429)
        waits.append(int(answer.headers.get("Retry-After", 0)))
        if waits[-1] == 4:
            break
    assert waits[-1] == 4 and waits[0] == 0  # the first failure is checked at once
    assert "Too many attempts. Wait 4 seconds before trying again." in answer.text

    # Sooner than that: not checked, even with the right password, and counted (the wait is the longest now).
    early = browser.try_login(agent["email"], agent["password"])
    assert early.status_code == 429 and "Wait 4 seconds before trying again." in early.text
    assert not browser.logged_in()

    time.sleep(4.5)
    assert browser.try_login(agent["email"], agent["password"]).status_code == 302
    assert browser.logged_in()
    reasons = [e.detail.get("reason", "password") for e in audit_of(agent["email"], "login.failure")]
    assert reasons[-2:] == ["too_soon", "too_soon"]


def test_an_address_with_too_many_failures_is_locked_out_whichever_account_it_tries(
    strict: str, agent: dict[str, Any]
) -> None:
    address = new_address()
    spray = Browser(strict, address)
    # One guess at each of 20 accounts: no account reaches its limit, the address does with the 20th.
    emails = [f"nobody-{n}-{secrets.token_hex(3)}@example.test" for n in range(20)]
    answers = [spray.try_login(email, "Summer2026!") for email in emails]
    assert [a.status_code for a in answers] == [401] * 19 + [429]
    [lock] = audit_of(emails[-1], "login.locked")
    assert lock.detail["scope"] == "ip" and lock.ip == address

    same_address = Browser(strict, address)
    refused = same_address.try_login(agent["email"], agent["password"])
    assert refused.status_code == 429 and not same_address.logged_in()
    assert audit_of(agent["email"], "login.failure")[-1].detail.get("reason") == "ip_locked"

    elsewhere = Browser(strict)
    assert elsewhere.try_login(agent["email"], agent["password"]).status_code == 302
    assert elsewhere.logged_in()


def test_a_success_forgets_the_accounts_failures(brief: str, agent: dict[str, Any]) -> None:
    browser = Browser(brief)
    for _ in range(2):
        for n in range(2):
            assert browser.try_login(agent["email"], f"guess-{n}").status_code == 401
        assert browser.try_login(agent["email"], agent["password"]).status_code == 302
        browser.client.cookies.clear()


def test_wrong_two_factor_codes_count_toward_the_accounts_lock(brief: str, agent: dict[str, Any]) -> None:
    owner = Browser(brief)
    assert owner.try_login(agent["email"], agent["password"]).status_code == 302
    page = owner.get("/account/two-factor").text
    _, form = enrolment_of(page)
    owner.token = Person.csrf_of(page)
    enrolled = owner.post("/account/two-factor", form)
    assert enrolled.status_code == 200 and "Two-factor is on." in enrolled.text

    thief = Browser(brief)  # knows the password, not the phone
    assert thief.try_login(agent["email"], agent["password"]).headers["location"] == "/login/code"
    thief.token = Person.csrf_of(thief.get("/login/code").text)
    answers = [thief.post("/login/code", {"code": f"{n:06d}"}) for n in (111111, 222222, 333333)]

    assert [a.status_code for a in answers] == [401, 401, 429]
    assert "Too many attempts" in answers[-1].text
    assert thief.try_login(agent["email"], agent["password"]).status_code == 429  # the password is locked out too
    assert not thief.logged_in()
    reasons = [e.detail.get("reason", "password") for e in audit_of(agent["email"], "login.failure")]
    assert reasons == ["code", "code", "code", "locked"]


def test_attempts_sent_all_at_once_to_two_processes_get_no_more_checks_than_one_at_a_time(
    strict: str, stack: Stack, agent: dict[str, Any]
) -> None:
    address = new_address()
    browsers = [Browser(url, address) for url in (strict, stack.base_url) for _ in range(15)]
    for browser in browsers:
        browser.anonymous()

    def attempt(pair: tuple[int, Browser]) -> int:
        n, browser = pair
        data = {"email": agent["email"], "password": f"guess-{n}", "csrf_token": browser.token}
        return browser.client.post("/login", data=data).status_code

    with ThreadPoolExecutor(len(browsers)) as pool:
        statuses = list(pool.map(attempt, enumerate(browsers)))

    assert sorted(set(statuses)) in ([401, 429], [429])
    reasons = [e.detail.get("reason", "password") for e in audit_of(agent["email"], "login.failure")]
    assert len(reasons) == 30
    # Each attempt is counted before its password is checked: three checks, then the growing delay, as in a row.
    assert reasons.count("password") == 3
