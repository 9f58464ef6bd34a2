"""How the console words what routing did to a conversation (templates/agent/_event.html): agents read these lines
in the timeline, so each routing event says who got the chat, who lost it and why, or that the visitor was missed."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from desk.models import ConversationEvent
from web import create_app


def rendered(kind: str, author_name: str | None = None, **detail: Any) -> str:
    at = datetime(2026, 11, 27, 9, 5, tzinfo=UTC)
    event = ConversationEvent(id=1, kind=kind, author_name=author_name, body="", detail=detail, created_at=at)
    app = create_app({"TESTING": True})
    with app.test_request_context("/console"):
        html = app.jinja_env.get_template("agent/_event.html").render(e=event)
    if (bus := app.extensions["deskbell.bus"]) is not None:
        bus.close()  # else it outlives the suite's nats-server, reconnecting
    return re.sub(r"\s+", " ", re.search(r'<span class="line">(.*?)</span>', html, re.S).group(1)).strip()


@pytest.mark.parametrize(
    ("kind", "author", "detail", "line"),
    [  # kind, author, detail, the line the agent reads
        ("assigned", None, {"by": "routing", "assignee_name": "Ida"}, "Routed to Ida"),
        ("assigned", "Bo", {"assignee_name": "Ida"}, "Bo assigned this to Ida"),
        (
            "unassigned",
            None,
            {"previous_name": "Ida", "reason": "not opened in time"},
            "Ida lost this: not opened in time",
        ),
        ("unassigned", None, {"previous_name": "Ida", "reason": "agent away"}, "Ida lost this: agent away"),
        ("unassigned", "Bo", {"previous_name": "Ida"}, "Bo unassigned Ida"),
        ("missed", None, {}, "Missed: the visitor waited over the limit for a reply"),
        ("resolved", None, {"reason": "idle"}, "Resolved for being idle"),
        ("resolved", "Bo", {}, "Bo resolved this"),
    ],
)
def test_routing_events_read_as_what_happened(
    database_url: str, kind: str, author: str | None, detail: dict[str, str], line: str
) -> None:
    assert rendered(kind, author, **detail) == line
