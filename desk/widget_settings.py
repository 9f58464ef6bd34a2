"""A site's widget settings (docs/widget.md, "Settings"): welcome text per language, colour, position and the
pre-chat form (docs/widget.md, "Pre-chat form"), and the proactive invitations (docs/widget.md, "Invitations").

Stored in `sites.widget`; validated here on the way in (`deskbell bootstrap`, later the admin pages) and completed
with the defaults on the way out (the session response). Nothing is escaped: the widget sets text with textContent.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from desk.protocol import storable

LANGUAGES = ("en", "zh")
POSITIONS = ("right", "left")
WELCOME_CHARS = 500
COLOR = re.compile(r"#[0-9a-fA-F]{6}")
DEFAULTS: dict[str, Any] = {"welcome": {}, "color": "#2956d6", "position": "right"}
# Proactive invitations: at most INVITATIONS rules a site, each shown after 0 to INVITATION_SECONDS seconds on a
# matching page, with INVITATION_CHARS of text per language; the caps below are each site's defaults.
INVITATIONS = 20
INVITATION_CHARS = 300
INVITATION_SECONDS = 600
MATCHES = {"starts": "path starts with", "contains": "path contains", "equals": "path equals"}
PATH_CHARS = 200
CAPS = {"hours": 24, "per_session": 1}
CAP_HOURS = 24 * 30
CAP_PER_SESSION = 20
# The pre-chat form: each of name and email is not asked, optional or required; the question's options are labels
# the visitor picks one of (stored as the custom attribute PRECHAT_ATTRIBUTE, which routing rules match).
PRECHAT_MODES = ("off", "optional", "required")
PRECHAT_OPTIONS = (2, 10)
PRECHAT_OPTION_CHARS = 60
PRECHAT_QUESTION_CHARS = 200
PRECHAT_ATTRIBUTE = "pre_chat_choice"


class InvalidSetting(ValueError):
    """A widget setting of the wrong shape."""


def parse(
    welcome: dict[str, str] | None = None, color: str | None = None, position: str | None = None
) -> dict[str, Any]:
    """The settings given, validated; those not given are left out (so the defaults apply)."""
    settings: dict[str, Any] = {}
    if welcome:
        for language, text in welcome.items():
            if language not in LANGUAGES:
                raise InvalidSetting(f"welcome language must be one of {', '.join(LANGUAGES)}, not {language!r}")
            if not text.strip() or len(text) > WELCOME_CHARS or not storable(text):
                raise InvalidSetting(f"welcome text must be 1 to {WELCOME_CHARS} characters of text")
        settings["welcome"] = dict(welcome)
    if color is not None:
        if not COLOR.fullmatch(color):
            raise InvalidSetting(f"color must be #rrggbb, not {color!r}")
        settings["color"] = color.lower()
    if position is not None:
        if position not in POSITIONS:
            raise InvalidSetting(f"position must be one of {', '.join(POSITIONS)}, not {position!r}")
        settings["position"] = position
    return settings


def parse_prechat(form: dict[str, Any]) -> dict[str, Any] | None:
    """The pre-chat form from `prechat_enabled` (a checkbox), `prechat_name` and `prechat_email` (PRECHAT_MODES),
    `prechat_question_en`/`_zh` and `prechat_options` (one a line). None when nothing is set, so a site that never
    used the form keeps no settings for it; settings kept while it is off come back when it is turned on again."""
    enabled = str(form.get("prechat_enabled") or "") in ("on", "1", "true", "yes")
    modes = {}
    for field in ("name", "email"):
        mode = str(form.get(f"prechat_{field}") or "off")
        if mode not in PRECHAT_MODES:
            raise InvalidSetting(f"pre-chat {field} must be one of {', '.join(PRECHAT_MODES)}, not {mode!r}")
        modes[field] = mode
    question = {}
    for language in LANGUAGES:
        text = str(form.get(f"prechat_question_{language}") or "").strip()
        if not text:
            continue
        if len(text) > PRECHAT_QUESTION_CHARS or not storable(text):
            raise InvalidSetting(f"pre-chat question ({language}) must be at most {PRECHAT_QUESTION_CHARS} characters")
        question[language] = text
    options = [line.strip() for line in str(form.get("prechat_options") or "").splitlines() if line.strip()]
    low, high = PRECHAT_OPTIONS
    if options and not low <= len(options) <= high:
        raise InvalidSetting(f"the pre-chat question needs {low} to {high} options, one a line, not {len(options)}")
    for option in options:
        if len(option) > PRECHAT_OPTION_CHARS or not storable(option):
            limit = PRECHAT_OPTION_CHARS
            raise InvalidSetting(f"a pre-chat option must be at most {limit} characters (one has {len(option)})")
    if len({option.casefold() for option in options}) < len(options):
        raise InvalidSetting("the pre-chat options must all be different")
    if question and not options:
        raise InvalidSetting(f"the pre-chat question needs {low} to {high} options, one a line")
    asks = modes["name"] != "off" or modes["email"] != "off" or bool(options)
    if enabled and not asks:
        raise InvalidSetting("the pre-chat form needs something to ask: a name, an email or a question with options")
    if not enabled and not asks and not question:
        return None
    return {"enabled": enabled, **modes, "question": question, "options": options}


def effective(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The settings the widget gets: the stored ones over the defaults (the invitations' caps too, when a site has
    invitations; a site without any gets no `invitations` key)."""
    settings = {**DEFAULTS, **(stored or {})}
    if "invitations" in settings:
        settings["invitations"] = invitations_of(settings)
    return settings


# -- proactive invitations --------------------------------------------------------------------------------------


def invitations_of(stored: dict[str, Any] | None) -> dict[str, Any]:
    """A site's invitations: {"rules": [...], "hours": N, "per_session": M}, with the default caps."""
    found = (stored or {}).get("invitations") or {}
    return {"rules": list(found.get("rules") or []), **CAPS, **{k: found[k] for k in CAPS if k in found}}


def _number(value: Any, what: str, low: int, high: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InvalidSetting(f"{what} must be a whole number from {low} to {high}") from None
    if not low <= number <= high:
        raise InvalidSetting(f"{what} must be from {low} to {high}, not {number}")
    return number


def parse_invitation(form: dict[str, Any]) -> dict[str, Any]:
    """One rule from the admin's form: match, path, seconds, text_en / text_zh, on. Raises InvalidSetting."""
    match = form.get("match") or "starts"
    if match not in MATCHES:
        raise InvalidSetting(f"the page condition must be one of {', '.join(MATCHES)}, not {match!r}")
    path = (form.get("path") or "").strip()
    if not path or len(path) > PATH_CHARS or not storable(path) or any(c.isspace() for c in path):
        raise InvalidSetting(f"the page path must be 1 to {PATH_CHARS} characters without spaces, like /pricing")
    if match != "contains" and not path.startswith("/"):
        raise InvalidSetting(f"the page path must begin with /, like /pricing, not {path!r}")
    seconds = _number(form.get("seconds", ""), "seconds on the page", 0, INVITATION_SECONDS)
    text: dict[str, str] = {}
    for language in LANGUAGES:
        value = " ".join((form.get(f"text_{language}") or "").split())
        if len(value) > INVITATION_CHARS or not storable(value):
            raise InvalidSetting(f"the invitation's text ({language}) must be at most {INVITATION_CHARS} characters")
        if value:
            text[language] = value
    if not text:
        raise InvalidSetting("an invitation needs its message, in English or Chinese")
    on = str(form.get("on", "")).lower() in ("1", "on", "true", "yes")
    return {"id": secrets.token_hex(4), "match": match, "path": path, "seconds": seconds, "text": text, "on": on}


def parse_caps(form: dict[str, Any]) -> dict[str, int]:
    """The caps from the admin's form: at most one invitation per visitor every `hours`, `per_session` a session."""
    return {
        "hours": _number(form.get("hours", ""), "hours between invitations", 1, CAP_HOURS),
        "per_session": _number(form.get("per_session", ""), "invitations per session", 1, CAP_PER_SESSION),
    }


def with_invitations(
    stored: dict[str, Any] | None, rules: list[dict[str, Any]], caps: dict[str, int] | None = None
) -> dict[str, Any]:
    """The site's widget settings with these rules (and caps); more than INVITATIONS rules are refused."""
    if len(rules) > INVITATIONS:
        raise InvalidSetting(f"a site has at most {INVITATIONS} invitations: delete one first")
    current = invitations_of(stored)
    return {**(stored or {}), "invitations": {**current, **(caps or {}), "rules": rules}}
