"""What agents do to a conversation (desk/actions/conversations.py, web/agent/actions.py): assign, take, transfer
with a note, resolve, reopen, snooze, pending, labels, private notes; refusals say why, races have one winner."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import nats
import pytest
from sqlalchemy import func, select

from desk import subjects
from desk.actions import conversations as act
from desk.actions.messages import Inbound, do_store_messages
from desk.actions.tenants import do_create_user
from desk.db import tenant_session
from desk.models import Conversation, ConversationEvent, Message, User
from desk.queries.timeline import timeline
from tests.clients import Agent, BackgroundLoop, Visitor, logged_in_agent, start_conversation
from tests.conftest import Stack
from tests.factories import new_conversation, new_team, new_tenant


def agent(tenant: uuid.UUID, name: str, role: str = "agent") -> uuid.UUID:
    with tenant_session(tenant) as session:
        email = f"{name.lower()}-{secrets.token_hex(4)}@example.test"
        user = do_create_user(session, email=email, name=name, role=role, password=secrets.token_urlsafe(12))
        return user.id


def conversation_of(tenant: uuid.UUID, conversation_id: uuid.UUID) -> Conversation:
    with tenant_session(tenant) as session:
        found = session.get(Conversation, conversation_id)
        assert found is not None
        return found


def events(tenant: uuid.UUID, conversation_id: uuid.UUID) -> list[ConversationEvent]:
    with tenant_session(tenant) as session:
        return [e.event for e in timeline(session, conversation_id) if e.event is not None]


def run(tenant: uuid.UUID, action: Callable[..., act.Change], *args: Any, **kwargs: Any) -> act.Change:
    """An action in a session of its own, as one web request runs it."""
    with tenant_session(tenant) as session:
        return action(session, *args, **kwargs)


# -- assigning ------------------------------------------------------------------------------------------------------


def test_an_agent_assigns_a_conversation_to_a_colleague_and_the_timeline_says_so(tenant: uuid.UUID) -> None:
    ann, bob = agent(tenant, "Ann"), agent(tenant, "Bob")
    conversation = new_conversation(tenant)

    change = run(tenant, act.do_assign, conversation, ann, bob)

    assert change.changed and conversation_of(tenant, conversation).assignee_id == bob
    [event] = events(tenant, conversation)
    assert (event.kind, event.author_name, event.detail["assignee_name"]) == ("assigned", "Ann", "Bob")
    assert change.signal() == {
        "kind": "conversation",
        "conversation_id": str(conversation),
        "change": "assigned",
        "event_id": event.id,
        "status": "open",
        "assignee_id": str(bob),
        "team_id": None,
    }


def test_assigning_again_to_the_same_agent_changes_nothing(tenant: uuid.UUID) -> None:
    ann = agent(tenant, "Ann")
    conversation = new_conversation(tenant)
    run(tenant, act.do_assign, conversation, ann, ann)
    again = run(tenant, act.do_assign, conversation, ann, ann, expected=None)  # a double click on "Assign to me"
    assert not again.changed and again.signal() is None
    assert [e.kind for e in events(tenant, conversation)] == ["assigned"]


def test_two_agents_taking_one_conversation_at_once_get_one_winner_and_a_clear_refusal(tenant: uuid.UUID) -> None:
    names = {agent(tenant, "Ann"): "Ann", agent(tenant, "Bob"): "Bob"}
    for _ in range(5):
        conversation = new_conversation(tenant)
        start = threading.Barrier(2)

        def take(agent_id: uuid.UUID, conversation: uuid.UUID = conversation, start: threading.Barrier = start) -> str:
            start.wait()
            try:
                run(tenant, act.do_assign, conversation, agent_id, agent_id, expected=None)
                return "won"
            except act.Conflict as exc:
                assert exc.status == 409
                return exc.message

        with ThreadPoolExecutor(2) as pool:
            outcomes = dict(zip(names, pool.map(take, names), strict=True))
        winner = conversation_of(tenant, conversation).assignee_id
        loser = next(a for a in names if a != winner)
        assert outcomes == {winner: "won", loser: f"Already taken by {names[winner]}."}
        assert [e.kind for e in events(tenant, conversation)] == ["assigned"]


def test_assigning_to_an_agent_of_another_tenant_or_a_deactivated_one_is_refused(tenant: uuid.UUID) -> None:
    ann, gone = agent(tenant, "Ann"), agent(tenant, "Gone")
    stranger = agent(new_tenant(), "Stranger")
    with tenant_session(tenant) as session:
        session.get(User, gone).is_active = False
        session.commit()
    conversation = new_conversation(tenant)

    with pytest.raises(act.Invalid, match="No such agent"):
        run(tenant, act.do_assign, conversation, ann, stranger)
    with pytest.raises(act.Invalid, match="Gone is deactivated"):
        run(tenant, act.do_assign, conversation, ann, gone)
    assert conversation_of(tenant, conversation).assignee_id is None
    assert events(tenant, conversation) == []


def test_another_tenants_conversation_cannot_be_touched(tenant: uuid.UUID) -> None:
    other = new_tenant()
    theirs = new_conversation(other)
    ann = agent(tenant, "Ann")
    for action in (act.do_resolve, act.do_reopen, act.do_set_pending):
        with pytest.raises(act.NotFound):
            run(tenant, action, theirs, ann)
    with pytest.raises(act.NotFound):
        run(tenant, act.do_add_note, theirs, ann, "mine now")
    assert conversation_of(other, theirs).status == "open"
    assert events(other, theirs) == []


def test_a_team_gets_the_conversation_and_keeps_its_agent(tenant: uuid.UUID) -> None:
    ann = agent(tenant, "Ann")
    sales = new_team(tenant, "Sales", ann)
    conversation = new_conversation(tenant)
    run(tenant, act.do_assign, conversation, ann, ann)

    run(tenant, act.do_assign_team, conversation, ann, sales)

    found = conversation_of(tenant, conversation)
    assert (found.team_id, found.assignee_id) == (sales, ann)
    assert events(tenant, conversation)[-1].detail["team_name"] == "Sales"
    with pytest.raises(act.Invalid, match="No such team"):
        run(tenant, act.do_assign_team, conversation, ann, new_team(new_tenant(), "Theirs"))


# -- transfer -------------------------------------------------------------------------------------------------------


def test_a_transfer_to_an_agent_moves_the_conversation_with_its_note(tenant: uuid.UUID) -> None:
    ann, bob = agent(tenant, "Ann"), agent(tenant, "Bob")
    conversation = new_conversation(tenant)
    run(tenant, act.do_assign, conversation, ann, ann)

    run(tenant, act.do_transfer, conversation, ann, agent_id=bob, note="Wants a refund for order 1142.")

    assert conversation_of(tenant, conversation).assignee_id == bob
    event = events(tenant, conversation)[-1]
    assert (event.kind, event.body) == ("transferred", "Wants a refund for order 1142.")
    assert (event.detail["from_name"], event.detail["to_name"]) == ("Ann", "Bob")


def test_a_transfer_to_a_team_leaves_it_for_the_team_to_pick_up(tenant: uuid.UUID) -> None:
    ann = agent(tenant, "Ann")
    billing = new_team(tenant, "Billing")
    conversation = new_conversation(tenant)
    run(tenant, act.do_assign, conversation, ann, ann)

    run(tenant, act.do_transfer, conversation, ann, team_id=billing, note="Invoice question")

    found = conversation_of(tenant, conversation)
    assert (found.team_id, found.assignee_id) == (billing, None)
    assert events(tenant, conversation)[-1].detail["to"] == "team"


def test_a_transfer_needs_one_target_and_a_note_of_message_size(tenant: uuid.UUID) -> None:
    ann, bob = agent(tenant, "Ann"), agent(tenant, "Bob")
    conversation = new_conversation(tenant)
    with pytest.raises(act.Invalid, match="Choose an agent or a team"):
        run(tenant, act.do_transfer, conversation, ann)
    with pytest.raises(act.Invalid, match="at most 4000 characters"):
        run(tenant, act.do_transfer, conversation, ann, agent_id=bob, note="x" * 4001)
    run(tenant, act.do_assign, conversation, ann, bob)
    with pytest.raises(act.Invalid, match="already with Bob"):
        run(tenant, act.do_transfer, conversation, ann, agent_id=bob)


# -- status ---------------------------------------------------------------------------------------------------------


def test_resolve_then_reopen(tenant: uuid.UUID) -> None:
    ann = agent(tenant, "Ann")
    conversation = new_conversation(tenant)

    run(tenant, act.do_resolve, conversation, ann)
    resolved = conversation_of(tenant, conversation)
    assert resolved.status == "resolved" and resolved.resolved_at is not None
    assert not run(tenant, act.do_resolve, conversation, ann).changed  # two agents resolving: one event

    run(tenant, act.do_reopen, conversation, ann)
    reopened = conversation_of(tenant, conversation)
    assert (reopened.status, reopened.resolved_at) == ("open", None)
    assert [e.kind for e in events(tenant, conversation)] == ["resolved", "reopened"]


def test_a_resolved_conversation_stays_closed_when_its_visitor_has_started_a_new_one(tenant: uuid.UUID) -> None:
    ann = agent(tenant, "Ann")
    conversation = new_conversation(tenant)
    run(tenant, act.do_resolve, conversation, ann)
    visitor_id = conversation_of(tenant, conversation).visitor_id
    with tenant_session(tenant) as session:  # the visitor writes again: a new conversation
        [stored] = do_store_messages(session, [Inbound(visitor_id, "again", "Me again")])
        session.commit()
    assert stored is not None and stored.message.conversation_id != conversation

    with pytest.raises(act.Conflict, match="newer open conversation"):
        run(tenant, act.do_reopen, conversation, ann)
    assert conversation_of(tenant, conversation).status == "resolved"


def test_snooze_until_a_future_time_and_the_visitors_next_message_wakes_it(tenant: uuid.UUID) -> None:
    ann = agent(tenant, "Ann")
    conversation = new_conversation(tenant)
    until = datetime.now(UTC) + timedelta(hours=3)

    run(tenant, act.do_snooze, conversation, ann, until)

    snoozed = conversation_of(tenant, conversation)
    assert (snoozed.status, snoozed.snoozed_until) == ("snoozed", until)
    assert events(tenant, conversation)[-1].detail["until"] == until.isoformat()
    with tenant_session(tenant) as session:
        do_store_messages(session, [Inbound(snoozed.visitor_id, "wake", "Still there?")])
        session.commit()
    woken = conversation_of(tenant, conversation)
    assert (woken.status, woken.snoozed_until) == ("open", None)


def test_snoozing_into_the_past_or_without_a_time_zone_is_refused(tenant: uuid.UUID) -> None:
    ann = agent(tenant, "Ann")
    conversation = new_conversation(tenant)
    with pytest.raises(act.Invalid, match="in the future"):
        run(tenant, act.do_snooze, conversation, ann, datetime.now(UTC) - timedelta(minutes=1))
    with pytest.raises(act.Invalid, match="time zone"):
        run(tenant, act.do_snooze, conversation, ann, datetime.now() + timedelta(hours=1))
    assert conversation_of(tenant, conversation).status == "open"


def test_resolving_a_snoozed_conversation_clears_its_wake_up(tenant: uuid.UUID) -> None:
    ann = agent(tenant, "Ann")
    conversation = new_conversation(tenant)
    run(tenant, act.do_snooze, conversation, ann, datetime.now(UTC) + timedelta(days=1))
    run(tenant, act.do_resolve, conversation, ann)
    assert conversation_of(tenant, conversation).snoozed_until is None


def test_pending_waits_on_the_visitor(tenant: uuid.UUID) -> None:
    ann = agent(tenant, "Ann")
    conversation = new_conversation(tenant)
    run(tenant, act.do_set_pending, conversation, ann)
    assert conversation_of(tenant, conversation).status == "pending"
    assert events(tenant, conversation)[-1].kind == act.PENDING


def test_snooze_presets_are_the_agents_wall_clock() -> None:
    paris = ZoneInfo("Europe/Paris")
    friday_evening = datetime(2026, 3, 6, 17, 30, tzinfo=UTC)  # 18:30 in Paris
    assert act.snooze_preset("1h", friday_evening, paris) == friday_evening + timedelta(hours=1)
    assert act.snooze_preset("tomorrow", friday_evening, paris) == datetime(2026, 3, 7, 9, 0, tzinfo=paris)
    assert act.snooze_preset("next-week", friday_evening, paris) == datetime(2026, 3, 9, 9, 0, tzinfo=paris)
    with pytest.raises(act.Invalid):
        act.snooze_preset("someday", friday_evening, paris)


# -- labels ---------------------------------------------------------------------------------------------------------


def test_labels_are_normalised_kept_once_and_removed(tenant: uuid.UUID) -> None:
    ann = agent(tenant, "Ann")
    conversation = new_conversation(tenant)
    run(tenant, act.do_add_label, conversation, ann, "  Billing   Issue ")
    assert not run(tenant, act.do_add_label, conversation, ann, "billing issue").changed
    run(tenant, act.do_add_label, conversation, ann, "vip")
    assert conversation_of(tenant, conversation).labels == ["billing issue", "vip"]

    run(tenant, act.do_remove_label, conversation, ann, "VIP")

    assert conversation_of(tenant, conversation).labels == ["billing issue"]
    assert [e.detail for e in events(tenant, conversation)] == [
        {"added": "billing issue"},
        {"added": "vip"},
        {"removed": "vip"},
    ]


@pytest.mark.parametrize(
    ("label", "reason"),
    [("", "cannot be empty"), ("x" * 41, "at most 40"), ("café", "letters a–z"), ("a/b", "letters a–z")],
)
def test_a_label_out_of_bounds_is_refused(tenant: uuid.UUID, label: str, reason: str) -> None:
    conversation = new_conversation(tenant)
    with pytest.raises(act.Invalid, match=reason):
        run(tenant, act.do_add_label, conversation, agent(tenant, "Ann"), label)


def test_a_conversation_holds_at_most_twenty_labels(tenant: uuid.UUID) -> None:
    ann = agent(tenant, "Ann")
    conversation = new_conversation(tenant)
    for i in range(20):
        run(tenant, act.do_add_label, conversation, ann, f"l{i}")
    with pytest.raises(act.Invalid, match="at most 20 labels"):
        run(tenant, act.do_add_label, conversation, ann, "one-more")
    assert len(conversation_of(tenant, conversation).labels) == 20


# -- notes ----------------------------------------------------------------------------------------------------------


def test_a_private_note_is_an_event_never_a_message(tenant: uuid.UUID) -> None:
    ann = agent(tenant, "Ann")
    conversation = new_conversation(tenant)

    run(tenant, act.do_add_note, conversation, ann, "Customer is a reseller, check their discount.")

    [note] = events(tenant, conversation)
    assert (note.kind, note.author_name, note.body) == ("note", "Ann", "Customer is a reseller, check their discount.")
    with tenant_session(tenant) as session:
        bodies = session.scalars(select(Message.body).where(Message.conversation_id == conversation)).all()
    assert bodies == ["Hello?"]


def test_a_note_has_the_size_limit_of_a_message_and_a_retry_stores_it_once(tenant: uuid.UUID) -> None:
    ann = agent(tenant, "Ann")
    conversation = new_conversation(tenant)
    with pytest.raises(act.Invalid, match="empty"):
        run(tenant, act.do_add_note, conversation, ann, "   ")
    with pytest.raises(act.Invalid, match="at most 4000 characters"):
        run(tenant, act.do_add_note, conversation, ann, "x" * 4001)
    first = run(tenant, act.do_add_note, conversation, ann, "once", client_id="c-1")
    again = run(tenant, act.do_add_note, conversation, ann, "once", client_id="c-1")
    assert first.event is not None and again.event is not None and first.event.id == again.event.id
    with tenant_session(tenant) as session:
        assert session.scalar(select(func.count()).select_from(ConversationEvent)) == 1


# -- over HTTP, against the running product -------------------------------------------------------------------------


def post(agent: Agent, conversation_id: str, action: str, **form: str) -> tuple[int, str]:
    """What the action bar's forms post with htmx: the CSRF header, and HX-Request for the fragment."""
    headers = {**agent.csrf_header(conversation_id), "HX-Request": "true"}
    response = agent.client.post(f"/console/c/{conversation_id}/{action}", data=form, headers=headers)
    return response.status_code, response.text


def user_id(stack: Stack, email: str) -> str:
    import psycopg

    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        return str(conn.execute("SELECT id FROM users WHERE email = %s", (email,)).fetchone()[0])


def test_over_http_the_second_agent_to_take_a_conversation_is_told_who_has_it(stack: Stack) -> None:
    tenant = stack.bootstrap("ann", "bob")
    ann, bob = Agent(stack.base_url), Agent(stack.base_url)
    for client, login in zip((ann, bob), tenant["agents"], strict=True):
        assert client.login(login["email"], login["password"]).status_code == 200
    ids = [user_id(stack, login["email"]) for login in tenant["agents"]]
    conversation = start_conversation(stack.base_url, tenant["site_key"], "Who can help?")
    ann.csrf_header(conversation), bob.csrf_header(conversation)  # both have the page open
    start = threading.Barrier(2)

    def take(pair: tuple[Agent, str]) -> tuple[int, str]:
        client, me = pair
        start.wait()
        return post(client, conversation, "assign", agent_id=me, expected="")

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(take, zip((ann, bob), ids, strict=True)))

    assert sorted(status for status, _ in answers) == [200, 409]
    refused = next(text for status, text in answers if status == 409)
    winner = next(i for i, (status, _) in enumerate(answers) if status == 200)
    assert f"Already taken by {('Ann', 'Bob')[winner]}." in refused
    assert 'role="alert"' in refused and "Traceback" not in refused
    assert 'data-action="resolve"' in refused  # the bar is still there, up to date, with the reason in it


def test_over_http_a_refused_action_answers_with_the_reason_in_the_bar(stack: Stack) -> None:
    tenant = stack.bootstrap("cleo")
    agent = logged_in_agent(stack.base_url, tenant)
    conversation = start_conversation(stack.base_url, tenant["site_key"], "hi")

    status, text = post(agent, conversation, "snooze", until="2001-01-01T09:00", tz="Europe/Paris")
    assert status == 400 and "Snooze until a time in the future." in text
    status, text = post(agent, conversation, "labels", add="no/slashes")
    assert status == 400 and "letters a–z" in text
    status, text = post(agent, conversation, "transfer", to="agent:" + str(uuid.uuid4()), note="x")
    assert status == 400 and "No such agent." in text
    missing = str(uuid.uuid4())
    status, text = post(agent, conversation, "resolve")  # fine
    assert status == 200 and 'data-action="reopen"' in text
    response = agent.client.post(f"/console/c/{missing}/resolve", headers={**agent.csrf_header(), "HX-Request": "true"})
    assert response.status_code == 404 and "No such conversation." in response.text


def test_over_http_labels_snooze_and_a_plain_form_post(stack: Stack) -> None:
    tenant = stack.bootstrap("dina")
    agent = logged_in_agent(stack.base_url, tenant)
    conversation = start_conversation(stack.base_url, tenant["site_key"], "hi")

    status, text = post(agent, conversation, "labels", add="  Refund ")
    assert status == 200 and 'data-label="refund"' in text
    status, text = post(agent, conversation, "snooze", preset="tomorrow", tz="Asia/Tokyo")
    assert status == 200 and 'data-status="snoozed"' in text
    status, text = post(agent, conversation, "labels", remove="refund")
    assert status == 200 and "data-label=" not in text
    # Without htmx (a plain form post), the action redirects back to the conversation.
    page = agent.conversation_page(conversation)
    plain = agent.client.post(
        f"/console/c/{conversation}/reopen", data={"csrf_token": Agent.csrf(page)}, follow_redirects=False
    )
    assert plain.status_code == 303 and plain.headers["location"].endswith(f"/console/c/{conversation}")


def test_over_http_an_action_is_announced_to_the_tenants_consoles(stack: Stack) -> None:
    tenant = stack.bootstrap("emil")
    agent = logged_in_agent(stack.base_url, tenant)
    conversation = start_conversation(stack.base_url, tenant["site_key"], "hi")
    tenant_id = _tenant_of(stack, conversation)
    loop = BackgroundLoop()
    try:
        nc = loop.run(nats.connect(stack.env["NATS_URL"]))
        sub = loop.run(nc.subscribe(subjects.agent_events(tenant_id)))
        loop.run(nc.flush())

        assert post(agent, conversation, "resolve")[0] == 200

        async def next_change() -> dict:
            while True:
                payload = json.loads((await sub.next_msg(timeout=5)).data)
                if payload.get("kind") == "conversation" and payload.get("change") == "resolved":
                    return payload

        payload = loop.run(next_change())
        assert (payload["conversation_id"], payload["status"]) == (conversation, "resolved")
        loop.run(nc.close())
    finally:
        loop.close()


def test_over_http_a_private_note_never_reaches_the_visitor(stack: Stack) -> None:
    tenant = stack.bootstrap("fran")
    agent = logged_in_agent(stack.base_url, tenant)
    secret = "Note-" + secrets.token_hex(6)

    async def scenario() -> None:
        visitor = Visitor(stack.base_url, tenant["site_key"])
        await visitor.connect()
        await visitor.send({"type": "message", "client_id": "c1", "body": "hello"})
        conversation = (await visitor.expect("ack"))["conversation_id"]
        page = await asyncio.to_thread(agent.conversation_page, conversation)
        client_id = re.search(r'name="client_id" value="([^"]+)"', page).group(1)
        headers = {**agent.csrf_header(conversation), "HX-Request": "true"}
        note = await asyncio.to_thread(
            agent.client.post,
            f"/console/c/{conversation}/notes",
            data={"body": f"{secret}: VIP, be nice", "client_id": client_id},
            headers=headers,
        )
        assert note.status_code == 200 and 'data-mode="note"' in note.text
        assert (await asyncio.to_thread(agent.reply, conversation, "How can I help?")).status_code == 200
        reply = await visitor.expect("message")
        while reply["sender"] != "agent":  # the visitor's own message comes back too, before or after its ack
            reply = await visitor.expect("message")
        assert reply["body"] == "How can I help?"
        assert secret not in json.dumps(visitor.frames)
        page = await asyncio.to_thread(agent.conversation_page, conversation)
        assert secret in page and "only agents see this" in page
        await visitor.close()

    asyncio.run(scenario())


def _tenant_of(stack: Stack, conversation: str) -> str:
    import psycopg

    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT tenant_id FROM conversations WHERE id = %s", (conversation,)).fetchone()
        return str(row[0])
