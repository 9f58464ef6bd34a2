"""A tenant's settings (`tenants.settings`, docs/admin.md "Routing and security"): validated on the way in,
completed with the defaults on the way out. Two sections:

- routing: auto_assign (bool), strategy (round_robin | least_busy), routing's time limits, reopen_after_idle, and
  `rules`, the ordered routing rules (desk/routing_rules.py validates them; desk/actions/rules.py edits them)
- security: session_minutes (how long a login lasts), password_min_length, console_networks (CIDR blocks the
  console and the admin pages are served to; empty: anywhere)
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable
from typing import Any

STRATEGIES = ("round_robin", "least_busy")
SESSION_MINUTES = (5, 60 * 24 * 30)
PASSWORD_LENGTH = (8, 128)
NETWORKS_MAX = 50

DEFAULTS: dict[str, dict[str, Any]] = {
    "routing": {"auto_assign": True, "strategy": "round_robin"},
    "security": {"session_minutes": 12 * 60, "password_min_length": 10, "console_networks": []},
}
SECTIONS = tuple(DEFAULTS)


class InvalidSetting(ValueError):
    """A setting of the wrong shape; the message is for the admin."""


def effective(stored: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The settings in force: each stored section's values over that section's defaults."""
    stored = stored or {}
    return {name: {**copy.deepcopy(defaults), **(stored.get(name) or {})} for name, defaults in DEFAULTS.items()}


def _int(value: object, name: str, bounds: tuple[int, int]) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InvalidSetting(f"{name} must be a whole number") from None
    low, high = bounds
    if not low <= number <= high:
        raise InvalidSetting(f"{name} must be between {low} and {high}")
    return number


def parse_networks(lines: str | Iterable[str]) -> list[str]:
    """CIDR blocks (or single addresses), one a line or comma-separated, normalised ("10.0.0.1/8" is refused:
    host bits set means the admin probably meant something else)."""
    parts = lines.replace(",", "\n").splitlines() if isinstance(lines, str) else list(lines)
    networks: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        try:
            network = ipaddress.ip_network(part, strict=True)
        except ValueError as exc:
            raise InvalidSetting(f"not an address range (CIDR): {part!r} ({exc})") from None
        if str(network) not in networks:
            networks.append(str(network))
    if len(networks) > NETWORKS_MAX:
        raise InvalidSetting(f"at most {NETWORKS_MAX} address ranges")
    return networks


# Routing's time limits (desk/actions/lapses.py): seconds, 0 = never; absent = the installation's default
# (desk.settings.Routing, DESKBELL_ROUTING_*).
ROUTING_LIMITS = {
    "open_timeout_seconds": "Reassign a chat not opened within",
    "missed_after_seconds": "Mark missed after waiting",
    "idle_resolve_seconds": "Resolve idle conversations after",
}
ROUTING_SECONDS = (0, 7 * 24 * 3600)


def _checked(value: object) -> bool:
    return value not in (None, "", "0", "false", "off", False)


def parse_routing(form: dict[str, Any]) -> dict[str, Any]:
    """The routing section from a form: a checkbox `auto_assign` (present: on), `strategy`, and, when the form
    has them, routing's time limits (blank: the installation's default) and the checkbox `reopen_after_idle`."""
    strategy = form.get("strategy", DEFAULTS["routing"]["strategy"])
    if strategy not in STRATEGIES:
        raise InvalidSetting(f"strategy must be one of {', '.join(STRATEGIES)}")
    routing: dict[str, Any] = {"auto_assign": _checked(form.get("auto_assign")), "strategy": strategy}
    for key, name in ROUTING_LIMITS.items():
        value = form.get(key)
        if value is not None and str(value).strip() != "":
            routing[key] = _int(value, f"{name} (seconds)", ROUTING_SECONDS)
    if "open_timeout_seconds" in form:  # the admin's whole form, where an unticked box is a "no"
        routing["reopen_after_idle"] = _checked(form.get("reopen_after_idle"))
    return routing


def parse_security(form: dict[str, Any]) -> dict[str, Any]:
    defaults = DEFAULTS["security"]
    return {
        "session_minutes": _int(
            form.get("session_minutes", defaults["session_minutes"]), "Session lifetime", SESSION_MINUTES
        ),
        "password_min_length": _int(
            form.get("password_min_length", defaults["password_min_length"]),
            "Minimum password length",
            PASSWORD_LENGTH,
        ),
        "console_networks": parse_networks(form.get("console_networks", "")),
    }


PARSERS = {"routing": parse_routing, "security": parse_security}


def allows(networks: Iterable[str], address: str | None) -> bool:
    """Whether `address` is inside one of `networks`; no networks at all means anywhere."""
    networks = list(networks)
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(n) for n in networks)


def password_problem(password: str, min_length: int) -> str | None:
    """What is wrong with a new password under the tenant's policy, or None."""
    if len(password) < min_length:
        return f"The password must be at least {min_length} characters long."
    if len(password) > PASSWORD_LENGTH[1] * 8:
        return "The password is too long."
    return None
