"""Search over the tenant's messages and visitors (PostgreSQL full-text search)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from desk.models import Visitor


def visitor_panel_context(session: Session, visitor: Visitor) -> dict[str, Any]:
    """What templates/agent/_visitor.html needs besides the visitor (earlier conversations...)."""
    return {}
