"""Sessions (issue 7): a login starts a new session (the cookie from before it never becomes logged in), and an
admin ends every session of an agent ("Sign out everywhere"; deactivation and a password change do it too): the
agent's open browser is logged out at its next request, and its console's live stream is refused on reconnect."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.admin.conftest import Person, logged_in
from tests.conftest import Stack
from tests.factories import new_people


@pytest.fixture
def people(stack: Stack) -> dict[str, Any]:
    return new_people()


def session_cookie(person: Person) -> str:
    return person.client.cookies["session"]


def with_cookie(base_url: str, cookie: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=15)
    client.cookies.set("session", cookie)
    return client


def is_logged_in(client: httpx.Client) -> bool:
    return client.get("/console").status_code == 200


def stream_status(client: httpx.Client) -> int:
    """The status the console's live stream answers with (200: streaming), closed at once."""
    with client.stream("GET", "/live/console", timeout=15) as response:
        return response.status_code


def test_logging_in_changes_the_session_cookie_and_the_one_from_before_stays_logged_out(
    stack: Stack, people: dict[str, Any]
) -> None:
    browser = Person(stack.base_url).anonymous()
    before = session_cookie(browser)  # what an attacker could have planted in the browser (session fixation)

    assert browser.login(people["agent"]).status_code == 302
    after = session_cookie(browser)

    assert after != before
    assert is_logged_in(browser.client)
    assert not is_logged_in(with_cookie(stack.base_url, before))


def test_sign_out_everywhere_logs_the_agent_out_at_the_next_request(stack: Stack, people: dict[str, Any]) -> None:
    agent = logged_in(stack.base_url, people["agent"])
    on_phone = logged_in(stack.base_url, people["agent"])
    admin = logged_in(stack.base_url, people["admin"])
    assert agent.get("/console").status_code == 200

    assert "Sign out everywhere" in admin.get("/admin/agents").text
    answer = admin.post(f"/admin/agents/{people['agent']['id']}/sign-out")
    assert answer.status_code == 303
    assert "Signed out everywhere" in admin.get("/admin/agents").text

    fragment = on_phone.get("/console", headers={"HX-Request": "true"})  # the console's htmx takes the tab along
    assert fragment.status_code == 401 and fragment.headers["HX-Redirect"] == "/login?revoked=1"
    response = agent.get("/console")
    assert response.status_code == 302 and response.headers["location"].startswith("/login?revoked=1")
    assert "You have been signed out." in agent.get(response.headers["location"]).text
    for browser in (agent, on_phone):
        assert browser.get("/console").status_code == 302  # stays logged out
    assert is_logged_in(admin.client)  # nobody else is touched

    again = logged_in(stack.base_url, people["agent"])  # and the agent can log in again
    assert again.get("/console").status_code == 200


def test_a_revoked_agents_console_stream_is_refused_on_reconnect(stack: Stack, people: dict[str, Any]) -> None:
    agent = logged_in(stack.base_url, people["agent"])
    assert stream_status(agent.client) == 200

    admin = logged_in(stack.base_url, people["admin"])
    assert admin.post(f"/admin/agents/{people['agent']['id']}/sign-out").status_code == 303

    assert stream_status(agent.client) == 401


def test_a_deactivated_agent_reactivated_later_does_not_get_the_old_session_back(
    stack: Stack, people: dict[str, Any]
) -> None:
    agent = logged_in(stack.base_url, people["agent"])
    old_cookie = session_cookie(agent)
    admin = logged_in(stack.base_url, people["admin"])
    assert admin.post(f"/admin/agents/{people['agent']['id']}/deactivate").status_code == 303
    assert admin.post(f"/admin/agents/{people['agent']['id']}/reactivate").status_code == 303

    assert not is_logged_in(with_cookie(stack.base_url, old_cookie))
    assert stream_status(with_cookie(stack.base_url, old_cookie)) == 401


def test_changing_ones_password_signs_out_the_other_sessions_and_keeps_this_one(
    stack: Stack, people: dict[str, Any]
) -> None:
    here = logged_in(stack.base_url, people["agent"])
    elsewhere = logged_in(stack.base_url, people["agent"])
    new_password = "correct horse battery staple"

    answer = here.post(
        "/account/password",
        {"current": people["agent"]["password"], "password": new_password, "confirm": new_password},
    )

    assert answer.status_code == 200 and "Your other sessions have been signed out." in answer.text
    assert is_logged_in(here.client)
    assert not is_logged_in(elsewhere.client)
    assert logged_in(stack.base_url, {**people["agent"], "password": new_password}).get("/console").status_code == 200
