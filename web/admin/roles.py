"""Who may open which page (docs/admin.md, "Roles"): `requires(*roles)` is the one check every admin and
platform route makes.

Roles are `User.role`: agent, admin, owner, and, in SaaS mode, operator (a user of the platform's own tenant,
slug "platform", with the role "operator"; desk/actions/agents.py). Logged out: the login page. Logged in
without the role: 403.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, current_app, g, request
from flask_login import current_user

from desk import audit
from desk.actions.agents import PLATFORM_SLUG
from desk.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
ROLES = ("agent", "admin", "owner", "operator")
MANAGERS = ("admin", "owner")


def saas() -> bool:
    config: Settings = current_app.config["DESKBELL"]
    return config.deployment_mode == "saas"


def is_operator() -> bool:
    """A platform operator: SaaS mode, the role operator, in the platform's tenant (web/admin/guard.py loads it)."""
    tenant = g.get("tenant")
    return (
        saas()
        and current_user.is_authenticated
        and current_user.role == "operator"
        and tenant is not None
        and tenant.slug == PLATFORM_SLUG
    )


def has_role(*roles: str) -> bool:
    if not current_user.is_authenticated:
        return False
    if current_user.role == "operator":
        return "operator" in roles and is_operator()
    return current_user.role in roles


def requires(*roles: str) -> Callable[[F], F]:
    """The route answers users with one of `roles`; 403 for other users, the login page for nobody."""
    unknown = set(roles) - set(ROLES)
    assert not unknown, f"unknown roles {unknown}"

    def decorate(view: F) -> F:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
            if not has_role(*roles):
                abort(403, "Your role does not allow this page.")
            return view(*args, **kwargs)

        checked.required_roles = roles  # type: ignore[attr-defined]
        return checked  # type: ignore[return-value]

    return decorate


def client() -> audit.Client:
    """The request's address (after trusted proxies) and User-Agent, for the audit log."""
    return audit.Client(request.remote_addr, request.user_agent.string or None)
