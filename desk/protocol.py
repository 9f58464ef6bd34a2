"""The visitor protocol's frames, parsed and validated in one place. The contract is docs/protocol.md (v1)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from desk.settings import Limits

VERSION = 1
# client_id: printable ASCII without spaces, so it can travel in a NATS header and a URL unchanged.
CLIENT_ID = re.compile(r"^[\x21-\x7e]+$")
# Agents' replies are stored with client_ids in their own namespace, which visitors may not use.
AGENT_CLIENT_PREFIX = "agent:"


class FrameError(ValueError):
    """A frame the server refuses; the socket stays open and gets an error frame."""

    def __init__(self, code: str, message: str, client_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_id = client_id  # set for a refused message frame whose client_id could be read

    def frame(self) -> dict[str, Any]:
        return error(self.code, self.message, self.client_id)


@dataclass(frozen=True)
class Hello:
    last_seq: int


@dataclass(frozen=True)
class Send:
    client_id: str
    body: str


@dataclass(frozen=True)
class Typing:
    """The visitor is typing: presence, never stored (the server passes on at most one a second per socket)."""


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Pong:
    pass


ClientFrame = Hello | Send | Typing | Ping | Pong


def validate_client_id(value: Any, limits: Limits) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= limits.client_id_chars or not CLIENT_ID.match(value):
        raise FrameError(
            "invalid_client_id",
            f"client_id must be 1-{limits.client_id_chars} printable ASCII characters without spaces",
        )
    return value


def storable(text: str) -> bool:
    """Can PostgreSQL keep this text? Not with a NUL, nor with a lone surrogate (JSON allows "\\ud800")."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_body(value: Any, limits: Limits) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FrameError("invalid_body", "body must be a non-empty string")
    if not storable(value):
        raise FrameError("invalid_body", "body must be valid Unicode text without NUL characters")
    if len(value) > limits.message_chars:
        raise FrameError("message_too_long", f"body must be at most {limits.message_chars} characters")
    return value


def _parse_send(data: dict[str, Any], limits: Limits) -> Send:
    client_id = validate_client_id(data.get("client_id"), limits)
    if client_id.startswith(AGENT_CLIENT_PREFIX):
        raise FrameError("invalid_client_id", f"client_id must not start with {AGENT_CLIENT_PREFIX!r}")
    try:
        return Send(client_id, validate_body(data.get("body"), limits))
    except FrameError as exc:
        exc.client_id = client_id  # the client can drop this message from its outbox: it will never be taken
        raise


def parse_client_frame(text: str | bytes, limits: Limits) -> ClientFrame:
    """Parse one frame from a visitor; raises FrameError with a code the client can act on."""
    size = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else len(text)
    if size > limits.frame_bytes:
        raise FrameError("frame_too_large", f"frames must be at most {limits.frame_bytes} bytes")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise FrameError("invalid_json", "frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise FrameError("invalid_frame", "frame must be a JSON object")
    kind = data.get("type")
    if kind == "hello":
        last_seq = data.get("last_seq", 0)
        if isinstance(last_seq, bool) or not isinstance(last_seq, int) or last_seq < 0:
            raise FrameError("invalid_last_seq", "last_seq must be a non-negative integer")
        return Hello(last_seq)
    if kind == "message":
        return _parse_send(data, limits)
    if kind == "typing":
        return Typing()
    if kind == "ping":
        return Ping()
    if kind == "pong":
        return Pong()
    raise FrameError("unknown_type", "type must be one of hello, message, typing, ping, pong")


# Server frames ---------------------------------------------------------------------------------------------


def welcome(
    visitor_id: str, last_seq: int, read_seq: int = 0, heartbeat_seconds: int | None = None
) -> dict[str, Any]:
    """`read_seq`: the highest seq an agent has read; `heartbeat_seconds`: on a socket, the server's heartbeat, which
    the client's own pings follow (both added to v1 compatibly; old clients ignore them)."""
    frame = {
        "type": "welcome",
        "visitor_id": visitor_id,
        "last_seq": last_seq,
        "protocol": VERSION,
        "read_seq": read_seq,
    }
    return frame if heartbeat_seconds is None else frame | {"heartbeat_seconds": heartbeat_seconds}


def ack(client_id: str, seq: int, conversation_id: str) -> dict[str, Any]:
    return {"type": "ack", "client_id": client_id, "seq": seq, "conversation_id": conversation_id}


def message(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored message as the visitor sees it (`stored` is desk.actions.messages.as_event's shape)."""
    return {
        "type": "message",
        "seq": stored["seq"],
        "client_id": stored["client_id"] if stored["sender"] == "visitor" else None,
        "sender": stored["sender"],
        "author": stored["author"],
        "body": stored["body"],
        "created_at": stored["created_at"],
    }


def typing(author: str | None) -> dict[str, Any]:
    """An agent is typing in the visitor's conversation; the widget shows it for a few seconds."""
    return {"type": "typing", "author": author}


def read(seq: int) -> dict[str, Any]:
    """An agent has read the thread up to `seq`."""
    return {"type": "read", "seq": seq}


def queue(position: int, wait_seconds: int | None) -> dict[str, Any]:
    """Where the visitor is in line (1: next; 0: an agent has the conversation) and the estimated wait."""
    return {"type": "queue", "position": position, "wait_seconds": wait_seconds}


def signal_frame(event: dict[str, Any]) -> dict[str, Any]:
    """The frame for a `typing`, `read` or `queue` event on the visitor's subject (desk/signals.py)."""
    kind = event["kind"]
    if kind == "typing":
        return typing(event.get("author"))
    if kind == "read":
        return read(event["seq"])
    if kind == "queue":
        return queue(event["position"], event.get("wait_seconds"))
    raise ValueError(f"not a visitor signal: {kind!r}")


# Errors about a message that the client should send again, unchanged, later; any other error is final.
RETRY_CODES = frozenset({"unavailable", "not_stored_yet"})


def error(code: str, message: str, client_id: str | None = None) -> dict[str, Any]:
    frame = {"type": "error", "code": code, "message": message, "retry": code in RETRY_CODES}
    if client_id is not None:
        frame["client_id"] = client_id
    return frame


PING = {"type": "ping"}
PONG = {"type": "pong"}


# Abuse limits (docs/protocol.md, "Limits"): the error frame a connection gets before it is closed for going over
# one. `limit` names the setting (desk/settings.py, Limits); `retry_after` says how many seconds to wait.
RATE_LIMITED = "rate_limited"


def rate_limited(limit: str, message: str, retry_after: int | None = None) -> dict[str, Any]:
    frame = error(RATE_LIMITED, message)
    frame["limit"] = limit
    if retry_after is not None:
        frame["retry_after"] = retry_after
    return frame
