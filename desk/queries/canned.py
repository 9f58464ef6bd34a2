"""Reads of saved replies (desk/actions/canned.py): the ones an agent sees, and the composer's `/shortcut` search."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import Select, and_, case, or_, select

from desk.models import CannedResponse

SEARCH_LIMIT = 10


def visible(agent_id: uuid.UUID) -> Select[tuple[CannedResponse]]:
    """The agent's own saved replies, then the tenant's shared ones, each by shortcut."""
    return (
        select(CannedResponse)
        .where(or_(CannedResponse.owner_id == agent_id, CannedResponse.owner_id.is_(None)))
        .order_by(CannedResponse.owner_id.is_(None), CannedResponse.shortcut)
    )


def _word_start(word: str) -> str:
    """A PostgreSQL regular expression: `word` at the start of a word (\\m), its characters taken literally."""
    return r"\m" + re.sub(r"([^\w])", r"\\\1", word)


def search(agent_id: uuid.UUID, query: str, limit: int = SEARCH_LIMIT) -> Select[tuple[CannedResponse]]:
    """What the composer offers for `/query`: the agent's own before the shared ones; within each, shortcuts
    starting with the query before bodies with words starting with each of its words; then by shortcut.

    An empty query lists them all (the agent typed only `/`).
    """
    mine_first = CannedResponse.owner_id.is_(None)
    query = query.strip().removeprefix("/").lower()
    if not query:
        return visible(agent_id).limit(limit)
    prefix = CannedResponse.shortcut.startswith(query, autoescape=True)
    in_body = and_(*(CannedResponse.body.regexp_match(_word_start(w), "i") for w in query.split()))
    return (
        select(CannedResponse)
        .where(or_(CannedResponse.owner_id == agent_id, CannedResponse.owner_id.is_(None)), or_(prefix, in_body))
        .order_by(mine_first, case((prefix, 0), else_=1), CannedResponse.shortcut)
        .limit(limit)
    )
