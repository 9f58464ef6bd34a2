"""The visitor protocol's client frames: what parse_client_frame accepts, and the code it refuses the rest with."""

from __future__ import annotations

import json

import pytest

from desk import protocol
from desk.protocol import FrameError, Hello, Ping, Pong, Send, Typing, parse_client_frame
from desk.settings import Limits

LIMITS = Limits()
SMALL = Limits(message_chars=10, client_id_chars=4, frame_bytes=120)


def frame(**fields: object) -> str:
    return json.dumps(fields, ensure_ascii=False)


def refusal(text: str | bytes, limits: Limits = LIMITS) -> str:
    with pytest.raises(FrameError) as refused:
        parse_client_frame(text, limits)
    return refused.value.code


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (frame(type="hello", last_seq=42), Hello(42)),
        (frame(type="hello"), Hello(0)),
        (frame(type="message", client_id="c-1", body="Hi, is anyone there?"), Send("c-1", "Hi, is anyone there?")),
        (frame(type="message", client_id="c-2", body="Grüße 👋"), Send("c-2", "Grüße 👋")),
        (frame(type="typing"), Typing()),
        (frame(type="typing", extra="ignored"), Typing()),
        (frame(type="ping"), Ping()),
        (frame(type="pong"), Pong()),
        (frame(type="ping").encode(), Ping()),
    ],
)
def test_each_valid_frame_is_parsed(text: str | bytes, parsed: object) -> None:
    assert parse_client_frame(text, LIMITS) == parsed


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "invalid_json"),
        (b"\xff\xfe{", "invalid_json"),
        ("[]", "invalid_frame"),
        ('"hello"', "invalid_frame"),
        ("null", "invalid_frame"),
        (frame(), "unknown_type"),
        (frame(type="read", seq=3), "unknown_type"),  # a server frame, not a client one
        (frame(type="hello", last_seq=-1), "invalid_last_seq"),
        (frame(type="hello", last_seq="3"), "invalid_last_seq"),
        (frame(type="hello", last_seq=True), "invalid_last_seq"),
        (frame(type="hello", last_seq=1.5), "invalid_last_seq"),
        (frame(type="hello", last_seq=None), "invalid_last_seq"),
        (frame(type="message", body="hi"), "invalid_client_id"),
        (frame(type="message", client_id="", body="hi"), "invalid_client_id"),
        (frame(type="message", client_id="has space", body="hi"), "invalid_client_id"),
        (frame(type="message", client_id="café", body="hi"), "invalid_client_id"),
        (frame(type="message", client_id=7, body="hi"), "invalid_client_id"),
        (frame(type="message", client_id="c" * (LIMITS.client_id_chars + 1), body="hi"), "invalid_client_id"),
        (frame(type="message", client_id="c-1"), "invalid_body"),
        (frame(type="message", client_id="c-1", body=""), "invalid_body"),
        (frame(type="message", client_id="c-1", body=" \n\t"), "invalid_body"),
        (frame(type="message", client_id="c-1", body=["hi"]), "invalid_body"),
        (frame(type="message", client_id="c-1", body="x" * (LIMITS.message_chars + 1)), "message_too_long"),
        (frame(type="ping", padding="x" * LIMITS.frame_bytes), "frame_too_large"),
    ],
)
def test_each_invalid_frame_is_refused_with_its_code(text: str | bytes, code: str) -> None:
    assert refusal(text) == code


def test_a_message_at_the_default_limits_is_accepted() -> None:
    client_id, body = "c" * LIMITS.client_id_chars, "x" * LIMITS.message_chars
    assert parse_client_frame(frame(type="message", client_id=client_id, body=body), LIMITS) == Send(client_id, body)


def test_smaller_limits_apply_to_body_client_id_and_frame() -> None:
    assert parse_client_frame(frame(type="message", client_id="abcd", body="x" * 10), SMALL) == Send("abcd", "x" * 10)
    assert refusal(frame(type="message", client_id="abcd", body="x" * 11), SMALL) == "message_too_long"
    assert refusal(frame(type="message", client_id="abcde", body="hi"), SMALL) == "invalid_client_id"
    assert refusal(frame(type="ping", padding="x" * 120), SMALL) == "frame_too_large"


def test_frame_size_is_counted_in_utf8_bytes_not_characters() -> None:
    text = frame(type="ping", padding="é" * 80)
    assert len(text) < SMALL.frame_bytes < len(text.encode())
    assert refusal(text, SMALL) == "frame_too_large"


def test_a_refusal_carries_a_message_naming_the_limit() -> None:
    with pytest.raises(FrameError) as refused:
        parse_client_frame(frame(type="message", client_id="c-1", body="x" * 11), SMALL)
    assert "10" in refused.value.message


def test_a_body_with_a_nul_character_is_refused_before_it_reaches_postgresql() -> None:
    with pytest.raises(FrameError) as refused:
        parse_client_frame(json.dumps({"type": "message", "client_id": "c1", "body": "a\x00b"}), LIMITS)
    assert refused.value.code == "invalid_body"


def test_visitors_cannot_use_the_agents_client_id_namespace() -> None:
    with pytest.raises(FrameError) as refused:
        parse_client_frame(json.dumps({"type": "message", "client_id": "agent:abc", "body": "hi"}), LIMITS)
    assert refused.value.code == "invalid_client_id"


def test_a_refused_message_names_its_client_id_and_says_not_to_retry() -> None:
    with pytest.raises(FrameError) as refused:
        parse_client_frame(json.dumps({"type": "message", "client_id": "c9", "body": "x" * 4001}), LIMITS)
    assert refused.value.frame() == {
        "type": "error",
        "code": "message_too_long",
        "message": "body must be at most 4000 characters",
        "retry": False,
        "client_id": "c9",
    }


def test_errors_that_mean_send_again_say_so() -> None:
    from desk.protocol import error

    assert error("unavailable", "later", "c1")["retry"] is True
    assert error("invalid_json", "bad")["retry"] is False


def test_a_lone_surrogate_is_refused_as_text_postgresql_cannot_store() -> None:
    with pytest.raises(FrameError) as refused:
        parse_client_frame('{"type": "message", "client_id": "c1", "body": "a\\ud800b"}', LIMITS)
    assert (refused.value.code, refused.value.client_id) == ("invalid_body", "c1")


def test_welcome_keeps_every_v1_field_and_adds_the_read_position() -> None:
    assert protocol.welcome("v-1", 7, read_seq=5) == {
        "type": "welcome",
        "visitor_id": "v-1",
        "last_seq": 7,
        "protocol": 1,
        "read_seq": 5,
    }
    assert protocol.welcome("v-1", 0)["read_seq"] == 0
    assert protocol.welcome("v-1", 0, heartbeat_seconds=20)["heartbeat_seconds"] == 20  # on a socket only


def test_typing_and_read_frames_name_the_agent_and_the_seq() -> None:
    assert protocol.typing("Dora") == {"type": "typing", "author": "Dora"}
    assert protocol.read(12) == {"type": "read", "seq": 12}


def test_the_unknown_type_error_lists_typing() -> None:
    with pytest.raises(FrameError) as refused:
        parse_client_frame(frame(type="teleport"), LIMITS)
    assert "typing" in refused.value.message
