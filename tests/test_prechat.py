"""The pre-chat form's server side (docs/widget.md, "Pre-chat form"): what the session response asks a new visitor,
and `POST /api/v1/widget/prechat`, which keeps the answers only when they fit the site's form, on the real
processes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from desk import widget_settings
from desk.db import system_session
from desk.models import Site, Visitor
from tests.clients import Visitor as VisitorClient
from tests.clients import session as widget_session
from tests.conftest import Stack

FORM = {
    "prechat_enabled": "on",
    "prechat_name": "optional",
    "prechat_email": "required",
    "prechat_question_en": "What brings you here?",
    "prechat_options": "Sales\nSupport",
}


def site_asking(stack: Stack, form: dict[str, str] = FORM) -> str:
    """A new tenant whose site has this pre-chat form (as the site admin page saves it); returns its site key."""
    tenant = stack.bootstrap()
    with system_session() as session:
        site = session.scalars(select(Site).where(Site.site_key == tenant["site_key"])).one()
        site.widget = {**(site.widget or {}), "prechat": widget_settings.parse_prechat(form)}
        session.commit()
    return str(tenant["site_key"])


def answer(stack: Stack, token: str, **fields: Any) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/api/v1/widget/prechat", json={"visitor_token": token, **fields}, timeout=10)


def visitor_row(visitor_id: str) -> Visitor:
    with system_session() as session:
        visitor = session.get(Visitor, uuid.UUID(visitor_id))
        session.expunge(visitor)
        return visitor


def test_a_new_visitor_is_asked_the_sites_form_and_the_answers_are_kept(stack: Stack) -> None:
    site_key = site_asking(stack)
    started = widget_session(stack.base_url, site_key).json()
    assert started["prechat"] == {
        "name": "optional",
        "email": "required",
        "question": {"en": "What brings you here?"},
        "options": ["Sales", "Support"],
    }

    saved = answer(stack, started["visitor_token"], name="Ada", email=" ada@example.com ", choice="Support")

    assert saved.status_code == 200, saved.text
    assert saved.json() == {
        "status": "saved",
        "name": "Ada",
        "email": "ada@example.com",
        "choice": "Support",
        "hours": saved.json()["hours"],  # as the session's (tests/test_widget_hours.py)
    }
    assert saved.json()["hours"]["open"] is True
    visitor = visitor_row(started["visitor_id"])
    assert (visitor.name, visitor.email) == ("Ada", "ada@example.com")
    assert visitor.context["attributes"] == {"pre_chat_choice": "Support"}
    again = widget_session(stack.base_url, site_key, started["visitor_token"]).json()
    assert again["visitor_id"] == started["visitor_id"]
    assert again["prechat"] is None  # answered: the composer from now on


@pytest.mark.parametrize(
    ("fields", "error", "field"),
    [
        ({"email": "ada@example.com", "choice": "Billing"}, "invalid_choice", "choice"),
        ({"email": "ada@example.com", "choice": "sales"}, "invalid_choice", "choice"),
        ({"email": "ada@example.com", "choice": ["Sales"]}, "invalid_choice", "choice"),
        ({"email": "ada@example.com"}, "missing_choice", "choice"),
        ({"email": "not an email", "choice": "Sales"}, "invalid_email", "email"),
        ({"email": "ada@", "choice": "Sales"}, "invalid_email", "email"),
        ({"choice": "Sales"}, "missing_email", "email"),
        ({"name": "A" * 201, "email": "ada@example.com", "choice": "Sales"}, "invalid_name", "name"),
        ({"name": 7, "email": "ada@example.com", "choice": "Sales"}, "invalid_name", "name"),
    ],
)
def test_answers_that_do_not_fit_the_form_are_refused_and_change_nothing(
    stack: Stack, fields: dict[str, Any], error: str, field: str
) -> None:
    site_key = site_asking(stack)
    started = widget_session(stack.base_url, site_key).json()
    before = visitor_row(started["visitor_id"])

    refused = answer(stack, started["visitor_token"], **{"name": "Ada", **fields})

    assert refused.status_code == 400
    assert refused.json()["error"] == error
    assert refused.json()["field"] == field
    assert refused.json()["message"]
    after = visitor_row(started["visitor_id"])
    assert (after.name, after.email, after.context) == (before.name, before.email, before.context)
    assert widget_session(stack.base_url, site_key, started["visitor_token"]).json()["prechat"] is not None


def test_a_required_name_must_be_given(stack: Stack) -> None:
    site_key = site_asking(stack, {"prechat_enabled": "on", "prechat_name": "required"})
    started = widget_session(stack.base_url, site_key).json()

    refused = answer(stack, started["visitor_token"], name="   ", email="ignored@example.com", choice="Sales")
    saved = answer(stack, started["visitor_token"], name="Ada", email="ignored@example.com", choice="Sales")

    assert refused.status_code == 400 and refused.json()["error"] == "missing_name"
    assert {k: saved.json()[k] for k in ("status", "name", "email", "choice")} == {
        "status": "saved",
        "name": "Ada",
        "email": None,  # not asked: not kept
        "choice": None,
    }
    assert visitor_row(started["visitor_id"]).email is None


def test_nothing_is_asked_when_the_form_is_off_or_the_visitor_has_a_conversation(stack: Stack) -> None:
    off = {**FORM, "prechat_enabled": ""}
    site_key = site_asking(stack, off)
    started = widget_session(stack.base_url, site_key).json()
    assert started["prechat"] is None
    refused = answer(stack, started["visitor_token"], email="ada@example.com", choice="Sales")
    assert refused.status_code == 409 and refused.json()["error"] == "prechat_off"

    site_key = site_asking(stack)
    visitor = VisitorClient(stack.base_url, site_key)

    async def write_first() -> None:  # a visitor who wrote before the form was turned on
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "before-the-form", "body": "Hello?"})
        await visitor.expect("ack")  # stored: the conversation exists
        await visitor.close()

    asyncio.run(write_first())
    assert widget_session(stack.base_url, site_key, visitor.token).json()["prechat"] is None
    assert widget_session(stack.base_url, site_key).json()["prechat"] is not None  # a new visitor is asked


def test_an_answer_without_a_valid_visitor_token_is_refused(stack: Stack) -> None:
    refused = answer(stack, "not-a-token", email="ada@example.com", choice="Sales")

    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"
