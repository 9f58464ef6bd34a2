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


class FrameError(ValueError):
    """A frame the server refuses; the socket stays open and gets an error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Hello:
    last_seq: int


@dataclass(frozen=True)
class Send:
    client_id: str
    body: str


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Pong:
    pass


ClientFrame = Hello | Send | Ping | Pong


def validate_client_id(value: Any, limits: Limits) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= limits.client_id_chars or not CLIENT_ID.match(value):
        raise FrameError(
            "invalid_client_id",
            f"client_id must be 1-{limits.client_id_chars} printable ASCII characters without spaces",
        )
    return value


def validate_body(value: Any, limits: Limits) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FrameError("invalid_body", "body must be a non-empty string")
    if len(value) > limits.message_chars:
        raise FrameError("message_too_long", f"body must be at most {limits.message_chars} characters")
    return value


def parse_client_frame(text: str | bytes, limits: Limits) -> ClientFrame:
    """Parse one frame from a visitor; raises FrameError with a code the client can act on."""
    size = len(text.encode()) if isinstance(text, str) else len(text)
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
        return Send(validate_client_id(data.get("client_id"), limits), validate_body(data.get("body"), limits))
    if kind == "ping":
        return Ping()
    if kind == "pong":
        return Pong()
    raise FrameError("unknown_type", "type must be one of hello, message, ping, pong")


# Server frames ---------------------------------------------------------------------------------------------


def welcome(visitor_id: str, last_seq: int) -> dict[str, Any]:
    return {"type": "welcome", "visitor_id": visitor_id, "last_seq": last_seq, "protocol": VERSION}


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


def error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **extra}


PING = {"type": "ping"}
PONG = {"type": "pong"}
