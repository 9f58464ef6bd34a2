"""Where a visitor is, for the agent (issue 4; docs/operations.md, "GeoIP"): the country from the database that
ships with Deskbell, the city from an MMDB city database the operator configures with GEOIP_CITY_DB. The test
databases are real MMDB files, written here with mmdb-writer and read by the same code as DB-IP's or MaxMind's."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from desk.visitor_context import CITY_DB_SETTING, location
from tests.clients import Visitor, logged_in_agent
from tests.conftest import Stack

LONDON = {
    "city": {"geoname_id": 2643743, "names": {"en": "London", "de": "London"}},
    "country": {"geoname_id": 2635167, "iso_code": "GB", "names": {"en": "United Kingdom"}},
}
MOUNTAIN_VIEW = {
    "city": {"names": {"en": "Mountain View"}},
    "country": {"iso_code": "US", "names": {"en": "United States"}},
}
PARIS = {"city": {"names": {"fr": "Paris"}}, "country": {"iso_code": "FR", "names": {"en": "France"}}}


def city_database(path: Path, networks: dict[str, dict[str, Any]]) -> Path:
    """An IPv6 MMDB city database (IPv4 addresses inside it, as in GeoLite2 and DB-IP) with these records."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="DBIP-City-Lite", languages=["en"])
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def city_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = city_database(tmp_path / "city.mmdb", {"81.2.69.0/24": LONDON, "2001:4860:4860::/48": MOUNTAIN_VIEW})
    monkeypatch.setenv(CITY_DB_SETTING, str(path))
    return path


def test_without_a_city_database_the_agent_gets_the_country_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CITY_DB_SETTING, raising=False)

    assert location("81.2.69.160") == {"country": "GB", "country_name": "United Kingdom", "city": None}


def test_a_configured_city_database_gives_the_city_for_ipv4_and_ipv6(city_db: Path) -> None:
    assert location("81.2.69.160") == {"country": "GB", "country_name": "United Kingdom", "city": "London"}
    assert location("2001:4860:4860::8888")["city"] == "Mountain View"
    # An address the city database does not know keeps its country from the bundled data.
    assert location("8.8.8.8") == {"country": "US", "country_name": "United States", "city": None}
    assert location("127.0.0.1") == {"country": None, "country_name": None, "city": None}
    assert location("not an address")["city"] is None


def test_a_city_is_shown_with_its_own_databases_country(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled data says GB for this address; the (newer) city database says Paris: never "Paris, UK"."""
    monkeypatch.setenv(CITY_DB_SETTING, str(city_database(tmp_path / "moved.mmdb", {"81.2.69.0/24": PARIS})))

    assert location("81.2.69.160") == {"country": "FR", "country_name": "France", "city": "Paris"}


@pytest.mark.parametrize("content", [b"not a database at all", None], ids=["corrupt", "missing"])
def test_a_corrupt_or_missing_city_database_logs_an_error_and_keeps_the_country(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, content: bytes | None
) -> None:
    path = tmp_path / "GeoLite2-City.mmdb"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setenv(CITY_DB_SETTING, str(path))

    with caplog.at_level(logging.ERROR, logger="desk.visitor_context"):
        found = location("81.2.69.160")
        location("81.2.69.161")

    assert found == {"country": "GB", "country_name": "United Kingdom", "city": None}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per process, not once per visitor
    assert f"GEOIP_CITY_DB={path} cannot be read" in errors[0]
    assert "country only" in errors[0]


# -- on the real processes: a web process behind a TLS proxy on 127.0.0.1 that passes the visitor's address -----


def visitor_in_conversation(base_url: str, site_key: str) -> tuple[str, str]:
    """A visitor says hello over a real socket: its token and its conversation."""

    async def scenario() -> tuple[str, str]:
        visitor = Visitor(base_url, site_key)
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": uuid.uuid4().hex, "body": "Hello"})
        ack = await visitor.expect("ack")
        await visitor.close()
        assert visitor.token is not None
        return visitor.token, ack["conversation_id"]

    return asyncio.run(scenario())


def session_from(base_url: str, site_key: str, token: str, address: str) -> httpx.Response:
    """The widget's session request on a new page, from `address`, as the proxy forwards it."""
    return httpx.post(
        f"{base_url}/api/v1/widget/session",
        json={"site_key": site_key, "visitor_token": token, "page": {"url": "https://shop.test/"}},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": address},
        timeout=10,
    )


def test_the_agent_sees_the_visitors_city_and_country(stack: Stack, tmp_path: Path) -> None:
    tenant = stack.bootstrap("gil")
    site_key = str(tenant["site_key"])
    token, conversation_id = visitor_in_conversation(stack.base_url, site_key)
    path = city_database(tmp_path / "dbip-city-lite.mmdb", {"81.2.69.0/24": LONDON})

    with stack.another_web(DESKBELL_ENV="production", TRUSTED_PROXIES="127.0.0.1", GEOIP_CITY_DB=str(path)) as url:
        assert session_from(url, site_key, token, "81.2.69.160").status_code == 200

    page = logged_in_agent(stack.base_url, tenant).conversation_page(conversation_id)
    assert '<dd class="location">London, United Kingdom</dd>' in page


def test_a_web_process_with_a_broken_city_database_serves_visitors_and_says_why(stack: Stack, tmp_path: Path) -> None:
    tenant = stack.bootstrap("hui")
    site_key = str(tenant["site_key"])
    token, conversation_id = visitor_in_conversation(stack.base_url, site_key)
    path = tmp_path / "GeoLite2-City.mmdb"
    path.write_bytes(b"\x00" * 4096)

    with stack.another_web(DESKBELL_ENV="production", TRUSTED_PROXIES="127.0.0.1", GEOIP_CITY_DB=str(path)) as url:
        assert session_from(url, site_key, token, "81.2.69.160").status_code == 200

    page = logged_in_agent(stack.base_url, tenant).conversation_page(conversation_id)
    assert '<dd class="location">United Kingdom</dd>' in page
    assert f"GEOIP_CITY_DB={path} cannot be read" in stack.logs()
