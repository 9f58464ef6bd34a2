"""Labels an admin defines (docs/admin.md, "Labels"): a name (the rules of desk/actions/conversations.py's
normalise_label, so every label can be put on a conversation) and a colour. Conversations carry label names, so
renaming one renames it on every conversation, and deleting one takes it off them."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import any_, func, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from desk import audit
from desk.actions.admin import Conflict, Invalid, NotFound, record
from desk.actions.conversations import normalise_label
from desk.models import Conversation, Label, User

COLOR = re.compile(r"#[0-9a-f]{6}")


def _color(value: str | None) -> str:
    color = (value or "#6b7280").strip().lower()
    if not COLOR.fullmatch(color):
        raise Invalid(f"A colour is #rrggbb, not {color!r}.")
    return color


def _commit_unique(session: Session, name: str) -> None:
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"There is a label {name!r} already.") from None


def _label(session: Session, label_id: uuid.UUID) -> Label:
    label = session.get(Label, label_id, with_for_update=True)
    if label is None:
        raise NotFound("No such label.")
    return label


def do_create_label(session: Session, actor: User, client: audit.Client, form: dict[str, Any]) -> Label:
    label = Label(name=normalise_label(form.get("name", "")), color=_color(form.get("color")))
    session.add(label)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"There is a label {label.name!r} already.") from None
    record(session, actor, client, "label.create", after={"name": label.name, "color": label.color}, label_id=label.id)
    _commit_unique(session, label.name)
    return label


def do_update_label(
    session: Session, actor: User, client: audit.Client, label_id: uuid.UUID, form: dict[str, Any]
) -> Label:
    label = _label(session, label_id)
    before = {"name": label.name, "color": label.color}
    old = label.name
    label.name, label.color = normalise_label(form.get("name", "")), _color(form.get("color"))
    if label.name != old:
        session.execute(
            update(Conversation)
            .where(old == any_(Conversation.labels))
            .values(labels=func.array_replace(Conversation.labels, old, label.name))
            .execution_options(synchronize_session=False)
        )
    after = {"name": label.name, "color": label.color}
    if after != before:
        record(session, actor, client, "label.update", before=before, after=after, label_id=label.id)
    _commit_unique(session, label.name)
    return label


def do_delete_label(session: Session, actor: User, client: audit.Client, label_id: uuid.UUID) -> None:
    label = _label(session, label_id)
    session.execute(
        update(Conversation)
        .where(label.name == any_(Conversation.labels))
        .values(labels=func.array_remove(Conversation.labels, label.name))
        .execution_options(synchronize_session=False)
    )
    record(session, actor, client, "label.delete", before={"name": label.name, "color": label.color}, label_id=label.id)
    session.delete(label)
    session.commit()
