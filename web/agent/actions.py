"""Conversation actions: assign, transfer, resolve, reopen, snooze, labels, private notes."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from desk.models import Conversation


def pane_context(session: Session, conversation: Conversation) -> dict[str, Any]:
    """What templates/agent/_actions.html needs besides the conversation (agents, teams...)."""
    return {}
