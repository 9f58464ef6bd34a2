"""Encryption at rest (docs/operations.md, "Encryption at rest"): message bodies and visitors' personal fields
sealed with AES-256-GCM under keys from configuration, each value carrying the id of its key.

Off by default. `DESKBELL_ENCRYPTION_KEYS` lists the keys by id and `DESKBELL_ENCRYPTION_ACTIVE` names the one new
values are written with (desk/settings.py). A stored value is one of:

    plain text                      written with encryption off (or before it was on)
    enc:v1:<kid>:<base64url(nonce | ciphertext | tag)>
    enc:raw:<text>                  plain text that itself starts with "enc:", written with encryption off

so the columns stay `text` and every reader copes with all three, whatever the key in use now. The `EncryptedText`
column type does it for the ORM, so call sites read and write plain strings. The associated data is the column's
name: a value copied into another column does not decrypt. `rotate()` (`deskbell rotate-keys`) re-encrypts what
is not under the active key.
"""

from __future__ import annotations

import base64
import logging
import os
import uuid
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Text, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

MARK = "enc:"
V1 = "enc:v1:"
RAW = "enc:raw:"
NONCE_BYTES = 12
# What a value shows when no configured key opens it (a key taken out of configuration too early, or tampering):
# the page still renders, and the log and `deskbell rotate-keys` say which key is missing.
UNREADABLE = "[unreadable: encrypted with key {kid}, which this server does not have]"


class Unreadable(ValueError):
    """A stored value that no configured key opens."""

    def __init__(self, kid: str, reason: str) -> None:
        super().__init__(f"value encrypted with key {kid!r} cannot be read: {reason}")
        self.kid = kid


@dataclass(frozen=True)
class Keyring:
    keys: dict[str, bytes] = field(default_factory=dict)
    active: str | None = None

    @property
    def on(self) -> bool:
        """New values are written encrypted."""
        return self.active is not None

    def seal(self, text: str, context: str) -> str:
        """`text` as it is stored now: encrypted under the active key, or plain (escaped if it looks sealed)."""
        if self.active is None:
            return RAW + text if text.startswith(MARK) else text
        nonce = os.urandom(NONCE_BYTES)
        sealed = _aead(self.keys[self.active]).encrypt(nonce, text.encode(), context.encode())
        return f"{V1}{self.active}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, stored: str, context: str) -> str:
        """The text of a stored value of any of the three forms; Unreadable when its key is missing or it was
        changed."""
        if not stored.startswith(MARK):
            return stored
        if stored.startswith(RAW):
            return stored[len(RAW) :]
        if not stored.startswith(V1):
            return stored  # written by code that knew no escaping, before this module: it is plain text
        kid, _, data = stored[len(V1) :].partition(":")
        key = self.keys.get(kid)
        if key is None:
            raise Unreadable(kid, "no such key in DESKBELL_ENCRYPTION_KEYS")
        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
            return _aead(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise Unreadable(kid, "not a value this key sealed for this column") from exc

    def current(self, stored: str) -> bool:
        """Is this stored value already in the form this server writes (under the active key, or plain)?"""
        if self.active is None:
            return not stored.startswith(MARK) or stored.startswith(RAW)
        return stored.startswith(f"{V1}{self.active}:")


@lru_cache(maxsize=16)
def _aead(key: bytes) -> AESGCM:
    return AESGCM(key)


def key_id(stored: str | None) -> str | None:
    """The id of the key a stored value was sealed with; None for plain text."""
    if stored is None or not stored.startswith(V1):
        return None
    return stored[len(V1) :].partition(":")[0]


@cache
def keyring() -> Keyring:
    """This process's keys, from its settings (read once; `keyring.cache_clear()` reads them again)."""
    from desk import settings

    config = settings.load().encryption
    return Keyring(dict(config.keys), config.active)


class EncryptedText(TypeDecorator[str]):
    """A text column whose values are sealed with the active key when written and opened when read.

    Only whole values round-trip: SQL over the column (LIKE, full-text search, concatenation) sees the stored
    form, so with encryption on it finds nothing in sealed values (desk/queries/search.py says so).
    """

    impl = Text
    cache_ok = True

    def __init__(self, context: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context = context

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else keyring().seal(value, self.context)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        try:
            return keyring().open(value, self.context)
        except Unreadable as exc:
            log.error("%s: %s", self.context, exc)
            return UNREADABLE.format(kid=exc.kid)


# The columns sealed, as "table.column": the associated data of their values, and what rotation walks.
COLUMNS = (
    "messages.body",
    "conversation_events.body",
    "conversations.last_message_preview",
    "visitors.name",
    "visitors.email",
)
# The primary key of each table above, for walking it in batches.
KEYS = {"messages": "id", "conversation_events": "id", "conversations": "id", "visitors": "id"}
BATCH = 500


# -- rotation ------------------------------------------------------------------------------------------------------


class Progress(Protocol):
    def start(self, label: str, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def finish(self) -> None: ...


@dataclass
class Rotated:
    """What `rotate` did: values rewritten, and values no configured key opens (left as they are), by column."""

    rewritten: int = 0
    unreadable: dict[str, int] = field(default_factory=dict)


def _pending(ring: Keyring, column: str) -> str:
    """SQL: the stored value is not in the form `ring` writes (left(), not LIKE: key ids may hold `_`)."""
    if ring.active is not None:
        prefix = f"{V1}{ring.active}:"
        return f"left({column}, {len(prefix)}) <> '{prefix}'"
    return f"left({column}, {len(MARK)}) = '{MARK}' AND left({column}, {len(RAW)}) <> '{RAW}'"


def _where(ring: Keyring | None, column: str, tenant_id: uuid.UUID | None) -> str:
    where = f"{column} IS NOT NULL"
    if ring is not None:
        where += f" AND {_pending(ring, column)}"
    return where + (" AND tenant_id = :tenant" if tenant_id is not None else "")


def census(session: Session, tenant_id: uuid.UUID | None = None) -> dict[str, dict[str, int]]:
    """For each sealed column, how many values are under each key id ("plain": not encrypted), in one tenant or
    all of them. Reads every row."""
    found: dict[str, dict[str, int]] = {}
    for name in COLUMNS:
        table, column = name.split(".")
        rows = session.execute(
            text(
                f"SELECT CASE WHEN left({column}, {len(V1)}) = '{V1}' THEN split_part({column}, ':', 3) "
                f"ELSE 'plain' END, count(*) FROM {table} WHERE {_where(None, column, tenant_id)} GROUP BY 1"
            ),
            {"tenant": tenant_id},
        )
        found[name] = {kid: count for kid, count in rows}
    return found


def rotate(
    session: Session, ring: Keyring, progress: Progress, batch: int = BATCH, tenant_id: uuid.UUID | None = None
) -> Rotated:
    """Rewrite every sealed column's values that are not under `ring`'s active key (or, with no active key, not
    plain), of one tenant or all, in batches of `batch` rows, one transaction each. `session` must be a system
    session. Resumable and idempotent: a run stopped at any point leaves each value in its old form or its new one,
    and the next run takes up what is left. A value the application changed meanwhile is left to it (the UPDATE
    checks the old value), and values no key opens are counted, not touched."""
    pending = {name: _count_pending(session, ring, name, tenant_id) for name in COLUMNS}
    target = f"key {ring.active}" if ring.active else "plain text"
    progress.start(f"Re-encrypting to {target}", sum(pending.values()))
    done = Rotated()
    for name in COLUMNS:
        if pending[name]:
            _rotate_column(session, ring, name, batch, progress, done, tenant_id)
    progress.finish()
    return done


def _count_pending(session: Session, ring: Keyring, name: str, tenant_id: uuid.UUID | None) -> int:
    table, column = name.split(".")
    sql = f"SELECT count(*) FROM {table} WHERE {_where(ring, column, tenant_id)}"
    return session.scalar(text(sql), {"tenant": tenant_id}) or 0


def _rotate_column(
    session: Session,
    ring: Keyring,
    name: str,
    batch: int,
    progress: Progress,
    done: Rotated,
    tenant_id: uuid.UUID | None,
) -> None:
    table, column = name.split(".")
    key = KEYS[table]
    where = _where(ring, column, tenant_id)
    first = text(f"SELECT {key}, {column} FROM {table} WHERE {where} ORDER BY {key} LIMIT :batch")
    following = text(
        f"SELECT {key}, {column} FROM {table} WHERE {where} AND {key} > :after ORDER BY {key} LIMIT :batch"
    )
    # One statement a batch; a row whose value the application changed since it was read is left to it.
    update = text(
        f"UPDATE {table} SET {column} = v.new FROM unnest(CAST(:ids AS {_key_type(table)}[]), CAST(:olds AS text[]), "
        f"CAST(:news AS text[])) AS v(id, old, new) WHERE {table}.{key} = v.id AND {table}.{column} = v.old"
    )
    after: Any = None
    while True:
        # Keyset pagination: each batch starts after the last row of the one before, unreadable rows included.
        query, params = (first, {}) if after is None else (following, {"after": after})
        rows = session.execute(query, {**params, "batch": batch, "tenant": tenant_id}).all()
        if not rows:
            break
        changes = []
        for ident, stored in rows:
            try:
                changes.append({"id": ident, "old": stored, "new": ring.seal(ring.open(stored, name), name)})
            except Unreadable:
                done.unreadable[name] = done.unreadable.get(name, 0) + 1
        if changes:
            session.execute(
                update,
                {
                    "ids": [c["id"] for c in changes],
                    "olds": [c["old"] for c in changes],
                    "news": [c["new"] for c in changes],
                },
            )
        session.commit()
        done.rewritten += len(changes)
        progress.advance(len(rows))
        after = rows[-1][0]


def _key_type(table: str) -> str:
    return "bigint" if table in ("messages", "conversation_events") else "uuid"


class NoProgress:
    """For callers without a progress bar."""

    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass
