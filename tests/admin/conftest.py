"""The admin panel against the running product: `stack` (self-hosted, as installed by default) and a second web
process in SaaS mode (`saas_url`), spoken to over HTTP by `Person`, a browser without JavaScript."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any
from unittest import mock

import httpx
import pyotp
import pytest
from flask import Flask

from tests.conftest import Stack

USER_AGENT = "DeskbellAdminTest/1.0 (like a browser)"


def app_for_reading() -> Flask:
    """The Flask app, to read its url_map and sign cookies, made without a NATS connection of its own (which would
    outlive the test's nats-server and complain)."""
    from web import create_app

    with mock.patch.dict(os.environ):
        os.environ.pop("NATS_URL", None)
        return create_app()


@pytest.fixture(scope="module")
def saas_url(stack: Stack) -> Iterator[str]:
    with stack.another_web(DEPLOYMENT_MODE="saas") as url:
        yield url


class Person:
    """Someone with a browser: cookies kept, redirects shown (not followed), forms posted with their CSRF token."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=15, headers={"User-Agent": USER_AGENT})
        self.token = ""

    @staticmethod
    def csrf_of(page: str) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match, "no CSRF token on the page"
        return match.group(1)

    def login(self, login: dict[str, Any]) -> httpx.Response:
        self.token = self.csrf_of(self.client.get("/login").text)
        response = self.client.post(
            "/login", data={"email": login["email"], "password": login["password"], "csrf_token": self.token}
        )
        # A new session after logging in: the token of any page of it.
        page = self.client.get("/account/password") if response.status_code == 302 else None
        if page is not None and page.status_code == 200:
            self.token = self.csrf_of(page.text)
        return response

    def anonymous(self) -> Person:
        self.token = self.csrf_of(self.client.get("/login").text)
        return self

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict[str, Any] | None = None) -> httpx.Response:
        return self.client.post(path, data={**(data or {}), "csrf_token": self.token})


def enrolment_of(page: str) -> tuple[str, dict[str, str]]:
    """The key the two-factor page shows, and its form's fields with the app's code typed in."""
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page)
    sealed = re.search(r'name="enrolment" value="([^"]+)"', page)
    assert secret is not None and sealed is not None
    return secret.group(1), {"enrolment": sealed.group(1), "code": pyotp.TOTP(secret.group(1)).now()}


def logged_in(base_url: str, login: dict[str, Any]) -> Person:
    person = Person(base_url)
    response = person.login(login)
    assert response.status_code == 302, response.text
    return person
