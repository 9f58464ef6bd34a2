"""Reads about the tenant's agents."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, select

from desk.models import User


def online_agent() -> Select[tuple[uuid.UUID]]:
    """One active user of the tenant who says they are online, if any: the widget's "Online" (else "Away")."""
    return select(User.id).where(User.is_active.is_(True), User.presence == "online").limit(1)
