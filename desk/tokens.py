"""Visitor tokens: signed, expiring, bound to one site. docs/protocol.md, step 1."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

SALT = "deskbell.visitor.v1"


@dataclass(frozen=True)
class VisitorClaims:
    tenant_id: uuid.UUID
    site_id: uuid.UUID
    visitor_id: uuid.UUID


def issue(secret_key: str, claims: VisitorClaims) -> str:
    return URLSafeTimedSerializer(secret_key, salt=SALT).dumps(
        {"t": str(claims.tenant_id), "s": str(claims.site_id), "v": str(claims.visitor_id)}
    )


def verify(secret_key: str, token: str, max_age_seconds: int) -> VisitorClaims | None:
    """The claims of a valid token, or None for a forged, malformed or expired one."""
    try:
        data = URLSafeTimedSerializer(secret_key, salt=SALT).loads(token, max_age=max_age_seconds)
        return VisitorClaims(uuid.UUID(data["t"]), uuid.UUID(data["s"]), uuid.UUID(data["v"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
