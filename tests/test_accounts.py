"""Accounts (issue 7; docs/admin.md, "Account security"): the password policy as people meet it (accepting an
invitation, changing one's password), the two-factor codes' rules, and the login limits' settings."""

from __future__ import annotations

import os
import secrets
import time
from typing import Any
from unittest import mock

import pyotp
import pytest
from sqlalchemy import select

from desk import accounts, settings
from desk.actions import agents as agent_actions
from desk.audit import Client
from desk.db import tenant_session
from desk.models import User
from tests.admin.conftest import Person, enrolment_of, logged_in
from tests.conftest import Stack
from tests.factories import new_people

HERE = Client("127.0.0.1", "test")


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "at least 10 characters"),
        ("x" * 1025, "at most 1024 characters"),
        ("ann.smith@example.com", "must not be your email address"),
        ("ANN.SMITH@EXAMPLE.COM!", "must not be your email address"),
        ("ann.smith2026", "must not be your email address"),
        ("password123", "too common"),
        ("Password123!", "too common"),
        ("!!Qwertyuiop99", "too common"),
        ("1234567890", "too common"),
        ("aaaaaaaaaaaa", "too common"),
        ("abababababab", "too common"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(password: str, problem: str) -> None:
    found = accounts.password_problem(password, 10, "ann.smith@example.com")
    assert found is not None and problem in found


@pytest.mark.parametrize("password", ["correct horse battery staple", "Zebra-lamp-17-orbit", "sixteen chars ok"])
def test_good_passwords_pass(password: str) -> None:
    assert accounts.password_problem(password, 10, "ann@example.com") is None


def test_changing_ones_password_to_a_common_one_or_ones_email_is_refused(stack: Stack) -> None:
    people = new_people()
    agent = logged_in(stack.base_url, people["agent"])
    current = people["agent"]["password"]  # type: ignore[index]
    email = people["agent"]["email"]  # type: ignore[index]

    for weak, says in ((email, "must not be your email address"), ("Password2026!", "This password is too common")):
        answer = agent.post("/account/password", {"current": current, "password": weak, "confirm": weak})
        assert answer.status_code == 400 and says in answer.text

    assert Person(stack.base_url).login({"email": email, "password": "Password2026!"}).status_code == 401


def test_an_invitee_cannot_choose_a_common_password(stack: Stack) -> None:
    people = new_people()
    with tenant_session(people["tenant_id"]) as session:  # type: ignore[arg-type]
        owner = session.get(User, people["owner"]["id"])  # type: ignore[index]
        assert owner is not None
        invite, token = agent_actions.do_create_invite(session, owner, HERE, "nina@example.test", "agent", ("agent",))
    nina = Person(stack.base_url)
    nina.token = Person.csrf_of(nina.get(f"/invite/{token}").text)

    weak = nina.post(f"/invite/{token}", {"name": "Nina", "password": "letmein2024", "confirm": "letmein2024"})
    assert weak.status_code == 400 and "This password is too common" in weak.text
    chosen = "plum orbit canyon"
    good = nina.post(f"/invite/{token}", {"name": "Nina", "password": chosen, "confirm": chosen})
    assert good.status_code == 302


def test_a_two_factor_code_works_once_and_one_step_either_side_is_accepted() -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    now = time.time()
    step = int(now) // 30

    assert accounts.totp_step(secret, totp.at(now), None, now) == step
    assert accounts.totp_step(secret, totp.at(now), step, now) is None  # used already
    assert accounts.totp_step(secret, totp.at(now + 30), step, now) == step + 1  # the phone runs ahead
    assert accounts.totp_step(secret, totp.at(now - 30), None, now) == step - 1  # or behind
    assert accounts.totp_step(secret, totp.at(now + 90), None, now) is None
    assert accounts.totp_step(secret, "12345", None, now) is None
    assert accounts.totp_step(secret, f"{totp.at(now)[:3]} {totp.at(now)[3:]}", None, now) == step  # spaces typed


def test_a_recovery_code_works_once_and_the_secret_is_unreadable_without_the_key() -> None:
    codes, hashes = accounts.new_recovery_codes()
    user = User(recovery_codes=hashes)
    assert len(set(codes)) == 10 and not set(codes) & set(hashes)

    assert accounts.use_recovery_code(user, codes[3].upper())
    assert not accounts.use_recovery_code(user, codes[3])
    assert len(user.recovery_codes) == 9

    encrypted = accounts.encrypt_totp_secret("JBSWY3DPEHPK3PXP", "one key")
    assert "JBSWY3DPEHPK3PXP" not in encrypted
    assert accounts.decrypt_totp_secret(encrypted, "one key") == "JBSWY3DPEHPK3PXP"
    assert accounts.decrypt_totp_secret(encrypted, "another key") is None


def test_the_login_limits_come_from_the_environment_with_defaults() -> None:
    with mock.patch.dict(os.environ):
        for name in [n for n in os.environ if n.startswith("DESKBELL_LOGIN_")]:
            del os.environ[name]
        assert settings.load().logins == settings.Logins(10, 50, 900, 3, 30, 900)
        os.environ.update(
            DESKBELL_LOGIN_MAX_FAILURES="5",
            DESKBELL_LOGIN_IP_MAX_FAILURES="100",
            DESKBELL_LOGIN_LOCKOUT_SECONDS="60",
            DESKBELL_LOGIN_DELAY_AFTER="0",
            DESKBELL_LOGIN_DELAY_MAX_SECONDS="10",
            DESKBELL_LOGIN_WINDOW_SECONDS="3600",
        )
        assert settings.load().logins == settings.Logins(5, 100, 60, 0, 10, 3600)


@pytest.mark.parametrize(
    "bad",
    [
        {"DESKBELL_LOGIN_MAX_FAILURES": "0"},
        {"DESKBELL_LOGIN_IP_MAX_FAILURES": "0"},
        {"DESKBELL_LOGIN_LOCKOUT_SECONDS": "0"},
        {"DESKBELL_LOGIN_DELAY_AFTER": "-1"},
        {"DESKBELL_LOGIN_WINDOW_SECONDS": "0"},
    ],
)
def test_a_login_limit_that_would_not_limit_stops_the_process(bad: dict[str, Any]) -> None:
    with mock.patch.dict(os.environ, bad), pytest.raises(RuntimeError, match="DESKBELL_LOGIN"):
        settings.load()


def turn_on_two_factor(person: Person) -> str:
    """Through the account page, as the browser test does; returns the key."""
    page = person.get("/account/two-factor").text
    secret, form = enrolment_of(page)
    person.token = Person.csrf_of(page)
    answer = person.post("/account/two-factor", form)
    assert answer.status_code == 200 and "Two-factor is on." in answer.text
    return secret


def test_a_console_tab_answering_after_the_two_factor_page_does_not_spoil_the_enrolment(stack: Stack) -> None:
    """Another tab's request read the session before the page and answered after it: its cookie, written back,
    lacks what the page put in the session. The code typed on the page is still taken."""
    agent = logged_in(stack.base_url, new_people()["agent"])  # type: ignore[arg-type]
    before = dict(agent.client.cookies)
    page = agent.get("/account/two-factor").text
    agent.client.cookies.clear()
    agent.client.cookies.update(before)  # the console tab's late answer
    _, form = enrolment_of(page)
    agent.token = Person.csrf_of(page)
    answer = agent.post("/account/two-factor", form)
    assert answer.status_code == 200 and "Two-factor is on." in answer.text


def test_an_enrolment_form_sealed_for_someone_else_is_refused(stack: Stack) -> None:
    people = new_people()
    mallory = logged_in(stack.base_url, people["agent"])  # type: ignore[arg-type]
    _, form = enrolment_of(mallory.get("/account/two-factor").text)
    victim = logged_in(stack.base_url, people["admin"])  # type: ignore[arg-type]
    victim.token = Person.csrf_of(victim.get("/account/two-factor").text)
    answer = victim.post("/account/two-factor", form)  # a key Mallory knows, planted on the admin's account
    assert answer.status_code == 400 and "That code is not right" in answer.text


def test_an_admin_resets_the_two_factor_of_an_agent_who_lost_their_phone(stack: Stack) -> None:
    people = new_people()
    agent = logged_in(stack.base_url, people["agent"])  # type: ignore[arg-type]
    turn_on_two_factor(agent)
    assert Person(stack.base_url).login(people["agent"]).headers["location"] == "/login/code"  # type: ignore[arg-type]

    admin = logged_in(stack.base_url, people["admin"])  # type: ignore[arg-type]
    assert "Two-factor on" in admin.get("/admin/agents").text
    assert admin.post(f"/admin/agents/{people['agent']['id']}/two-factor/reset").status_code == 303  # type: ignore[index]
    assert "Two-factor reset" in admin.get("/admin/agents").text

    assert agent.get("/console").status_code == 302  # signed out
    again = Person(stack.base_url)
    assert again.login(people["agent"]).headers["location"] == "/console"  # type: ignore[arg-type]


def test_turning_two_factor_off_takes_the_password(stack: Stack) -> None:
    people = new_people()
    agent = logged_in(stack.base_url, people["agent"])  # type: ignore[arg-type]
    turn_on_two_factor(agent)

    wrong = agent.post("/account/two-factor/off", {"password": "not my password"})
    assert wrong.status_code == 400 and "two-factor stays on" in wrong.text
    off = agent.post("/account/two-factor/off", {"password": people["agent"]["password"]})  # type: ignore[index]
    assert off.status_code == 200 and "Two-factor is off." in off.text
    assert Person(stack.base_url).login(people["agent"]).headers["location"] == "/console"  # type: ignore[arg-type]


def test_an_ipv6_address_is_limited_by_its_64_and_an_ipv4_one_by_itself() -> None:
    from web.auth.limits import ip_key

    assert ip_key("2001:db8:1:2::1") == ip_key("2001:db8:1:2:ffff::9") == "ip:2001:db8:1:2::/64"
    assert ip_key("2001:db8:1:3::1") != ip_key("2001:db8:1:2::1")
    assert ip_key("::ffff:203.0.113.7") == ip_key("203.0.113.7") == "ip:203.0.113.7"
    assert ip_key("203.0.113.8") != ip_key("203.0.113.7")


def test_counts_that_hold_nothing_any_more_are_deleted(database_url: str) -> None:
    from desk.db import system_session
    from desk.models import LoginThrottle
    from web.auth import limits

    def keys() -> set[str]:
        with system_session() as db:
            return set(db.scalars(select(LoginThrottle.key)))

    short = settings.Logins(window_seconds=1)
    old, address = f"old-{secrets.token_hex(3)}@example.test", f"10.9.{secrets.randbelow(250)}.1"
    limits.admit(old, address, short)
    time.sleep(1.2)
    new = f"new-{secrets.token_hex(3)}@example.test"
    limits.admit(new, "10.8.0.1", short)

    limits.forget_stale(short)

    assert limits.account_key(old) not in keys() and limits.ip_key(address) not in keys()
    assert limits.account_key(new) in keys()
