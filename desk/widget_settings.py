"""A site's widget settings (docs/widget.md, "Settings"): welcome text per language, colour and position.

Stored in `sites.widget`; validated here on the way in (`deskbell bootstrap`, later the admin pages) and completed
with the defaults on the way out (the session response). Nothing is escaped: the widget sets text with textContent.
"""

from __future__ import annotations

import re
from typing import Any

from desk.protocol import storable

LANGUAGES = ("en", "zh")
POSITIONS = ("right", "left")
WELCOME_CHARS = 500
COLOR = re.compile(r"#[0-9a-fA-F]{6}")
DEFAULTS: dict[str, Any] = {"welcome": {}, "color": "#2956d6", "position": "right"}


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


def effective(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The settings the widget gets: the stored ones over the defaults."""
    return {**DEFAULTS, **(stored or {})}
