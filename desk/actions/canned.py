"""Canned responses (saved replies): shared by the tenant (admins and owners manage them) or an agent's own.

docs/architecture.md, "The console: actions and notes". The composer finds them by `/shortcut`
(desk/queries/canned.py). A shortcut is unique among the tenant's shared responses and among each agent's own
(the partial unique indexes of models.CannedResponse), so an agent's own may share a shortcut with a shared one.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from desk.actions.conversations import Conflict, Forbidden, Invalid, NotFound
from desk.models import CannedResponse, User
from desk.protocol import FrameError, validate_body
from desk.settings import Limits

SHORTCUT_CHARS = 32
_SHORTCUT = re.compile(rf"[a-z0-9_-]{{1,{SHORTCUT_CHARS}}}")
MANAGERS = ("admin", "owner")


def manages_shared(user: User) -> bool:
    """Whether `user` may create, change and delete the tenant's shared responses."""
    return user.role in MANAGERS


def normalise_shortcut(value: str) -> str:
    """ "/Thanks " is "thanks"."""
    shortcut = value.strip().removeprefix("/").lower()
    if not _SHORTCUT.fullmatch(shortcut):
        raise Invalid(f"A shortcut is 1 to {SHORTCUT_CHARS} of a–z, 0–9, _ and -.")
    return shortcut


def _body(value: str, limits: Limits) -> str:
    """What a message may be (desk.protocol.validate_body): a saved reply is sent as one."""
    try:
        return validate_body(value, limits).strip()
    except FrameError as exc:
        if exc.code == "message_too_long":
            raise Invalid(f"A saved reply may be at most {limits.message_chars} characters.") from exc
        if not value.strip():
            raise Invalid("A saved reply needs some text.") from exc
        raise Invalid("A saved reply must be plain text.") from exc


def _actor(session: Session, actor_id: uuid.UUID) -> User:
    actor = session.scalar(select(User).where(User.id == actor_id))
    if actor is None or not actor.is_active:
        raise Forbidden("Your account cannot manage saved replies.")
    return actor


def _editable(session: Session, actor: User, canned_id: uuid.UUID) -> CannedResponse:
    """A response `actor` may change: their own, or a shared one when they manage those. Another agent's own is
    not found: nobody sees it but its owner."""
    canned = session.scalar(select(CannedResponse).where(CannedResponse.id == canned_id))
    if canned is None or (canned.owner_id is not None and canned.owner_id != actor.id):
        raise NotFound("No such saved reply.")
    if canned.owner_id is None and not manages_shared(actor):
        raise Forbidden("Only admins and owners change shared saved replies.")
    return canned


def _save(session: Session, canned: CannedResponse) -> CannedResponse:
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        whose = "a shared saved reply" if canned.owner_id is None else "another of your saved replies"
        raise Conflict(f"/{canned.shortcut} is already {whose}'s shortcut.") from None
    return canned


def do_create_canned(
    session: Session,
    actor_id: uuid.UUID,
    shortcut: str,
    body: str,
    shared: bool = False,
    limits: Limits = Limits(),  # noqa: B008 - frozen dataclass, never mutated
) -> CannedResponse:
    """A new saved reply: the agent's own, or the tenant's shared one (admins and owners). Commits."""
    shortcut, body = normalise_shortcut(shortcut), _body(body, limits)
    actor = _actor(session, actor_id)
    if shared and not manages_shared(actor):
        raise Forbidden("Only admins and owners add shared saved replies.")
    canned = CannedResponse(id=uuid.uuid4(), owner_id=None if shared else actor.id, shortcut=shortcut, body=body)
    session.add(canned)
    return _save(session, canned)


def do_update_canned(
    session: Session,
    actor_id: uuid.UUID,
    canned_id: uuid.UUID,
    shortcut: str,
    body: str,
    limits: Limits = Limits(),  # noqa: B008 - frozen dataclass, never mutated
) -> CannedResponse:
    shortcut, body = normalise_shortcut(shortcut), _body(body, limits)
    canned = _editable(session, _actor(session, actor_id), canned_id)
    canned.shortcut, canned.body = shortcut, body
    return _save(session, canned)


def do_delete_canned(session: Session, actor_id: uuid.UUID, canned_id: uuid.UUID) -> None:
    canned = _editable(session, _actor(session, actor_id), canned_id)
    session.delete(canned)
    session.commit()
