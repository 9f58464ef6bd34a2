"""Who a visitor is and where they come from, for the console: a proved identity and the page's context.

The session request carries both (docs/protocol.md, step 1); web/widget_api calls these functions and nothing here
knows about HTTP. Wrongly typed fields raise `InvalidField`; well-typed but malformed or unstorable values are
left out, as the page's fields always were.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import maxminddb
from geoip2fast import GeoIP2Fast
from maxminddb.errors import InvalidDatabaseError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from user_agents import parse as parse_user_agent

from desk.models import Visitor
from desk.protocol import storable

PAGE_FIELDS = {"url": 2000, "title": 500, "referrer": 2000}
IDENTITY_FIELDS = {"external_id": 200, "name": 200, "email": 320}
EMAIL_CHARS = 320
# "Looks like an email": something@something.tld without spaces; the reply, not a regex, is the real check.
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
UTM_CHARS = 200
TRAIL_LENGTH = 50
# The site's custom attributes (Deskbell.setAttributes): kept as strings, at most this many and this long.
ATTRIBUTES = 50
ATTRIBUTE_KEY_CHARS = 64
ATTRIBUTE_VALUE_CHARS = 500
# ua-parser's expressions have had catastrophic-backtracking bugs; no real browser sends more than this.
USER_AGENT_CHARS = 512
# Shapes the widget sends: navigator.language, Intl's IANA time zone name, screen "WIDTHxHEIGHT".
CLIENT_FIELDS = {
    "language": re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,4}"),
    "timezone": re.compile(r"[A-Za-z0-9_+\-]{1,32}(/[A-Za-z0-9_+\-]{1,32}){0,2}"),
    "screen": re.compile(r"[0-9]{1,5}x[0-9]{1,5}"),
}
# The path of an MMDB city database (docs/operations.md, "GeoIP"); unset: country only.
CITY_DB_SETTING = "GEOIP_CITY_DB"
CITY_CHARS = 200

log = logging.getLogger(__name__)


class InvalidField(ValueError):
    """A field of the session request has the wrong type or shape: the request is refused with 400."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Identity:
    """What the site's page says about its logged-in user; believed only when `hash` matches."""

    external_id: str
    hash: str
    name: str | None = None
    email: str | None = None


def parse_identity(value: Any) -> Identity | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidField("invalid_identity", "identity must be an object")
    fields: dict[str, str | None] = {}
    for key, limit in IDENTITY_FIELDS.items():
        text = value.get(key)
        if text is None or text == "":
            fields[key] = None
            continue
        if not isinstance(text, str):
            raise InvalidField("invalid_identity", f"identity.{key} must be a string")
        if len(text) > limit:
            raise InvalidField("invalid_identity", f"identity.{key} is longer than {limit} characters")
        if not storable(text):
            raise InvalidField("invalid_identity", f"identity.{key} is not storable text")
        fields[key] = text
    if fields["external_id"] is None:
        raise InvalidField("invalid_identity", "identity.external_id is required")
    given_hash = value.get("hash")
    if not isinstance(given_hash, str):
        raise InvalidField("invalid_identity", "identity.hash must be a string")
    return Identity(fields["external_id"], given_hash, fields["name"], fields["email"])


def parse_email(value: Any) -> str | None:
    """The email an anonymous visitor leaves with a message when no agent is online, or None when not given."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidField("invalid_email", "email must be a string")
    email = value.strip()
    if len(email) > EMAIL_CHARS or not storable(email) or not EMAIL.fullmatch(email):
        raise InvalidField("invalid_email", f"email must look like an email address, at most {EMAIL_CHARS} characters")
    return email


def identity_hash(secret: str, external_id: str) -> str:
    """What the site's server computes: hex HMAC-SHA256 of external_id, keyed by the site's identity secret."""
    return hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).hexdigest()


def identity_proved(secret: str, identity: Identity) -> bool:
    given = identity.hash.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(identity_hash(secret, identity.external_id).encode(), given)


def parse_page(value: Any) -> dict[str, str]:
    """The page the visitor is on, as far as it is well-formed text: anything else is left out, not refused."""
    if not isinstance(value, dict):
        return {}
    return {
        key: value[key][:limit]
        for key, limit in PAGE_FIELDS.items()
        if isinstance(value.get(key), str) and storable(value[key][:limit])
    }


def parse_client(data: dict[str, Any]) -> dict[str, str]:
    """`language`, `timezone` and `screen` as the widget reads them from the browser."""
    found = {}
    for key, shape in CLIENT_FIELDS.items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidField("invalid_context", f"{key} must be a string")
        if shape.fullmatch(value):
            found[key] = value
    return found


def parse_attributes(value: Any) -> dict[str, str | None]:
    """The custom attributes a page set with `Deskbell.setAttributes({...})`: strings, numbers and booleans become
    strings (as JavaScript's String() writes them), null removes the attribute. Keys longer than
    ATTRIBUTE_KEY_CHARS, nested values and unstorable text are left out; values are cut at ATTRIBUTE_VALUE_CHARS."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidField("invalid_attributes", "attributes must be an object")
    found: dict[str, str | None] = {}
    for key, raw in value.items():
        key = key.strip()
        if not key or len(key) > ATTRIBUTE_KEY_CHARS or not storable(key):
            continue
        if raw is None:
            found[key] = None
        elif isinstance(raw, bool):
            found[key] = "true" if raw else "false"
        elif isinstance(raw, int | float | str):
            text = raw if isinstance(raw, str) else _number(raw)
            if storable(text[:ATTRIBUTE_VALUE_CHARS]):
                found[key] = text[:ATTRIBUTE_VALUE_CHARS]
    return found


def _number(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def merge_attributes(stored: dict[str, str], given: dict[str, str | None]) -> dict[str, str]:
    """Stored attributes updated with what a page set: later values win, null removes, new keys beyond ATTRIBUTES
    are dropped (the ones kept first stay)."""
    merged = dict(stored)
    for key, value in given.items():
        if value is None:
            merged.pop(key, None)
        elif key in merged or len(merged) < ATTRIBUTES:
            merged[key] = value
    return merged


def utm(url: str) -> dict[str, str]:
    """The campaign parameters of a page URL (empty when it has none)."""
    try:
        query = parse_qsl(urlsplit(url).query)
    except ValueError:
        return {}
    return {k: v[:UTM_CHARS] for k, v in query if k in UTM_FIELDS and v and storable(v[:UTM_CHARS])}


def user_agent(header: str) -> dict[str, str]:
    """Browser, OS and device type ("mobile", "tablet", "desktop", "bot" or "other") from a User-Agent."""
    header = header[:USER_AGENT_CHARS]
    if not header or not storable(header):
        return {}
    parsed = parse_user_agent(header)
    if parsed.is_bot:
        device = "bot"
    elif parsed.is_tablet:
        device = "tablet"
    elif parsed.is_mobile:
        device = "mobile"
    elif parsed.is_pc:
        device = "desktop"
    else:
        device = "other"
    return {
        "browser": _named(parsed.browser.family, parsed.browser.version),
        "os": _named(parsed.os.family, parsed.os.version),
        "device": device,
    }


def _named(family: str, version: tuple[Any, ...]) -> str:
    return f"{family} {version[0]}" if version else family


@functools.cache
def _geoip() -> GeoIP2Fast:
    """GeoLite2 country data bundled in the geoip2fast package (IPv4 and IPv6): no network, loaded once (~0.1 s)."""
    return GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz", verbose=False)


@functools.cache
def _city_db(path: str) -> maxminddb.Reader | None:
    """The operator's city database (docs/operations.md, "GeoIP"), opened once per process; None when unusable.

    No maintained PyPI package ships city data under a licence we may redistribute, so the file is the operator's:
    DB-IP City Lite or MaxMind GeoLite2 City, both MMDB. A missing or broken file costs the city, never a request.
    """
    try:
        reader = maxminddb.open_database(path)
    except (OSError, InvalidDatabaseError, ValueError) as exc:
        log.error("%s=%s cannot be read (%s): visitors get their country only", CITY_DB_SETTING, path, exc)
        return None
    meta = reader.metadata()
    built = datetime.fromtimestamp(meta.build_epoch, UTC).date().isoformat()
    log.info("%s=%s: %s built %s", CITY_DB_SETTING, path, meta.database_type, built)
    return reader


def city_db() -> maxminddb.Reader | None:
    """The configured city database, or None without one; call it at start-up to report a bad file early."""
    path = os.environ.get(CITY_DB_SETTING, "").strip()
    return _city_db(path) if path else None


def _name(record: dict[str, Any], key: str) -> str | None:
    """`record[key]["names"]`, in English when there (GeoLite2 and DB-IP Lite always have it), else any language."""
    part = record.get(key)
    names = part.get("names") if isinstance(part, dict) else None
    if not isinstance(names, dict) or not names:
        return None
    name = names.get("en") or next(iter(names.values()))
    return name[:CITY_CHARS] if isinstance(name, str) and name and storable(name[:CITY_CHARS]) else None


def _city(ip: str) -> tuple[str | None, dict[str, str | None]]:
    """The city database's city of `ip`, and its country when it names one: (None, {}) without a database."""
    reader = city_db()
    if reader is None:
        return None, {}
    try:
        record = reader.get(ip)
    except ValueError:  # an IPv6 address and an IPv4-only file
        return None, {}
    except InvalidDatabaseError as exc:  # the file changed under us, or its data section is damaged
        log.error("%s: no city for %s (%s)", CITY_DB_SETTING, ip, exc)
        return None, {}
    if not isinstance(record, dict):
        return None, {}
    country = record.get("country")
    code = country.get("iso_code") if isinstance(country, dict) else None
    if not (isinstance(code, str) and len(code) == 2):
        return _name(record, "city"), {}
    return _name(record, "city"), {"country": code, "country_name": _name(record, "country")}


def location(ip: str | None) -> dict[str, str | None]:
    """Country of an IP address from the bundled database; its city from the operator's city database, if any.

    Where the city database places the address in another country than the bundled data (which is older), the
    city database's country is shown with its city, so the console never shows a city in the wrong country.
    """
    unknown: dict[str, str | None] = {"country": None, "country_name": None, "city": None}
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return unknown
    found = _geoip().lookup(str(address))
    if found.is_private:
        return unknown
    known = len(found.country_code) == 2 and found.country_code.isalpha()
    country = {"country": found.country_code, "country_name": found.country_name} if known else {}
    city, city_country = _city(str(address))
    if city and city_country:
        country = city_country
    elif not country:
        return unknown
    return {**unknown, **country, "city": city}


def context(page: dict[str, str], client: dict[str, str], user_agent_header: str, ip: str | None) -> dict[str, Any]:
    """What this session request says about the visitor; keys it knows nothing about are absent."""
    found: dict[str, Any] = {**client, **user_agent(user_agent_header), **location(ip)}
    campaign = utm(page.get("url", ""))
    if campaign:  # later pages without UTM keep the campaign that brought the visitor
        found["utm"] = campaign
    return found


def extend_trail(trail: list[dict[str, Any]], page: dict[str, str], at: datetime) -> list[dict[str, Any]]:
    step = {"url": page["url"], "title": page.get("title", ""), "at": at.isoformat(timespec="seconds")}
    return [*trail, step][-TRAIL_LENGTH:]


def find_visitor(
    session: Session, site_id: uuid.UUID, visitor_id: uuid.UUID | None, external_id: str | None
) -> Visitor:
    """The visitor a session request continues, locked for update.

    A proved `external_id` wins: it resumes that identified visitor from any browser. Otherwise the token's
    visitor, if any: an anonymous one becomes the identified visitor, keeping its thread. Else a new visitor.
    """
    current = session.get(Visitor, visitor_id, with_for_update=True) if visitor_id else None
    if external_id is None:
        return current or _new_visitor(session, site_id)
    known = select(Visitor).where(Visitor.site_id == site_id, Visitor.external_id == external_id).with_for_update()
    visitor = session.scalar(known)
    if visitor is not None:
        return visitor
    try:
        with session.begin_nested():
            if current is None or current.external_id is not None:
                current = _new_visitor(session, site_id)
            current.external_id = external_id
    except IntegrityError:  # another request identified this external_id first: continue that visitor
        return session.scalars(known).one()
    return current


def _new_visitor(session: Session, site_id: uuid.UUID) -> Visitor:
    visitor = Visitor(id=uuid.uuid4(), site_id=site_id)
    session.add(visitor)
    return visitor


def record_visit(
    visitor: Visitor,
    identity: Identity | None,
    page: dict[str, str],
    found: dict[str, Any],
    at: datetime | None = None,
    email: str | None = None,
    attributes: dict[str, str | None] | None = None,
) -> None:
    """Apply one session request to the visitor: a proved identity's name and email, the page, trail and context.

    An `email` the visitor typed is kept only for anonymous visitors: an identified one keeps the site's, proved one.
    `attributes` (from `parse_attributes`) are merged into the stored ones, under context["attributes"].
    """
    if identity is not None:
        visitor.name = identity.name or visitor.name
        visitor.email = identity.email or visitor.email
    elif email and visitor.external_id is None:
        visitor.email = email
    if page:
        visitor.page = page
    if page.get("url"):
        visitor.trail = extend_trail(visitor.trail or [], page, at or datetime.now(UTC))
    merged = {**(visitor.context or {}), **found}
    if attributes:
        merged["attributes"] = merge_attributes(merged.get("attributes") or {}, attributes)
    visitor.context = merged
