"""Routing rules: which team a new conversation goes to (docs/architecture.md, "Routing and the queue"; docs/admin.md,
"Routing rules"). Pure: the rules' shape, their validation, and the matcher; the writes are desk/actions/rules.py.

A tenant's rules are an ordered list in `tenants.settings["routing"]["rules"]`; the first whose condition holds
sends the conversation to its team. A stored rule is
    {"id": "a1b2c3d4", "when": <condition>, "key": <attribute name, for "attribute">, "value": str, "team_id": str}
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from desk.visitor_context import ATTRIBUTE_KEY_CHARS
from desk.widget_settings import PRECHAT_ATTRIBUTE

RULES_MAX = 50
VALUE_CHARS = 500
KEY_CHARS = ATTRIBUTE_KEY_CHARS  # a custom attribute's name
# The pre-chat form's answer is stored as this custom attribute (the option's label).
PRE_CHAT_KEY = PRECHAT_ATTRIBUTE
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,4}")

# Condition → what the admin page calls it. Page conditions compare the URL case-insensitively.
CONDITIONS = {
    "page_contains": "Page URL contains",
    "page_starts_with": "Page URL starts with",
    "page_glob": "Page URL matches (glob, * and ?)",
    "language": "Visitor's language is",
    "attribute": "Visitor attribute equals",
    "pre_chat": "Pre-chat choice is",
    "label": "Conversation has the label",
    "site": "Site is",
}


class InvalidRule(ValueError):
    """A rule of the wrong shape; the message is for the admin."""


@dataclass(frozen=True)
class Facts:
    """What the rules look at, as it was when the conversation started."""

    page_url: str = ""
    language: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    site_id: str = ""


def _text(value: object, what: str, limit: int = VALUE_CHARS) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRule(f"{what} is empty: write what to match.")
    text = value.strip()
    if len(text) > limit:
        raise InvalidRule(f"{what} may be at most {limit} characters (it has {len(text)}).")
    if "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise InvalidRule(f"{what} must be plain text.")
    return text


def _uuid(value: object, what: str, known: Iterable[str]) -> str:
    try:
        parsed = str(uuid.UUID(str(value)))
    except ValueError:
        raise InvalidRule(f"Choose a {what}.") from None
    if parsed not in set(known):
        raise InvalidRule(f"No such {what}.")
    return parsed


def parse_rule(
    form: dict[str, Any], team_ids: Iterable[str], site_ids: Iterable[str], rule_id: str | None = None
) -> dict[str, Any]:
    """A rule from the admin's form (`when`, `key`, `value`, `site_id`, `team_id`), or InvalidRule saying why."""
    when = form.get("when")
    if when not in CONDITIONS:
        raise InvalidRule(f"Choose a condition: one of {', '.join(CONDITIONS)}.")
    rule: dict[str, Any] = {"id": rule_id or secrets.token_hex(4), "when": when}
    if when == "site":
        rule["value"] = _uuid(form.get("site_id") or form.get("value"), "site", site_ids)
    elif when == "language":
        value = _text(form.get("value"), "The language")
        if not _LANGUAGE.fullmatch(value):
            raise InvalidRule(f"The language {value!r} is not a language tag, like zh or pt-BR.")
        rule["value"] = value
    elif when == "label":
        rule["value"] = " ".join(_text(form.get("value"), "The label").lower().split())
    else:
        rule["value"] = _text(form.get("value"), "The value")
    if when == "attribute":
        key = _text(form.get("key"), "The attribute's name", KEY_CHARS)
        rule["key"] = key
    rule["team_id"] = _uuid(form.get("team_id"), "team", team_ids)
    return rule


def validate(rules: object, team_ids: Iterable[str], site_ids: Iterable[str]) -> list[dict[str, Any]]:
    """A whole stored list, checked rule by rule (the admin's messages name the rule's number)."""
    if not isinstance(rules, list):
        raise InvalidRule("The rules must be a list.")
    if len(rules) > RULES_MAX:
        raise InvalidRule(f"At most {RULES_MAX} routing rules: delete one first.")
    checked = []
    for n, rule in enumerate(rules, start=1):
        if not isinstance(rule, dict):
            raise InvalidRule(f"Rule {n} is not a rule.")
        try:
            checked.append(parse_rule(rule, team_ids, site_ids, str(rule.get("id") or "") or None))
        except InvalidRule as exc:
            raise InvalidRule(f"Rule {n}: {exc}") from None
    return checked


def _language_matches(wanted: str, language: str) -> bool:
    """"zh" matches zh, zh-CN and zh-Hant-TW; "zh-CN" matches zh-CN (and its longer forms) only."""
    want, have = wanted.lower().split("-"), language.lower().replace("_", "-").split("-")
    return bool(language) and have[: len(want)] == want


def holds(rule: dict[str, Any], facts: Facts) -> bool:
    """Whether the rule's condition holds for these facts. An unknown condition never holds."""
    when, value = rule.get("when"), str(rule.get("value", ""))
    url = facts.page_url.casefold()
    if when == "page_contains":
        return bool(url) and value.casefold() in url
    if when == "page_starts_with":
        return bool(url) and url.startswith(value.casefold())
    if when == "page_glob":
        return bool(url) and fnmatchcase(url, value.casefold())
    if when == "language":
        return _language_matches(value, facts.language)
    if when in ("attribute", "pre_chat"):
        key = PRE_CHAT_KEY if when == "pre_chat" else str(rule.get("key", ""))
        given = facts.attributes.get(key)
        return given is not None and given.strip().casefold() == value.casefold()
    if when == "label":
        return value in facts.labels
    if when == "site":
        return value == facts.site_id
    return False


def first_match(rules: Iterable[dict[str, Any]], facts: Facts) -> tuple[int, dict[str, Any]] | None:
    """The first rule (its 1-based number, and itself) whose condition holds; None when none does."""
    for n, rule in enumerate(rules, start=1):
        if holds(rule, facts):
            return n, rule
    return None


def describe(rule: dict[str, Any], team_name: str, site_name: str | None = None) -> str:
    """The rule as the admin page and the timeline say it: 'Page URL contains "/pricing" → Sales'."""
    when = rule.get("when", "")
    condition = CONDITIONS.get(when, when)
    if when == "attribute":
        condition = f"Visitor attribute {rule.get('key', '')!r} equals"
    value = site_name if when == "site" and site_name else rule.get("value", "")
    return f'{condition} "{value}" → {team_name}'
