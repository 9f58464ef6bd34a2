"""Dead letters and slow batches (issue 3): a poison message is retried alone, so the rest of its batch is
stored; after DEAD_AFTER deliveries it waits in DESK_DEAD, where `deskbell dead` lists and replays it. An outage
is not the message's fault, and a batch slower than ack_wait stays with its worker. Real nats-server, PostgreSQL
and the Procfile's worker (docs/architecture.md, "When a message fails")."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.js.errors
import pytest
from honcho.environ import parse_procfile
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
from sqlalchemy import Engine, create_engine, text, update
from sqlalchemy.pool import NullPool

from desk import bus, subjects
from desk.actions.messages import Inbound, do_store_messages
from desk.db import engine, tenant_session
from desk.embedded import NatsServer, free_port
from desk.models import Visitor
from desk.queries.conversations import thread_after
from desk.settings import ROOT
from tests.conftest import Stack
from tests.factories import new_tenant, new_visitor
from workers import base

T = TypeVar("T")


def deskbell(stack: Stack, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "desk.cli", *args], env=stack.env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    return done.stdout


def dead_letters_of(stack: Stack, tenant: uuid.UUID) -> list[dict[str, Any]]:
    """What `deskbell dead list --json` shows for this tenant's subjects."""
    letters = json.loads(deskbell(stack, "dead", "list", "--json"))
    return [letter for letter in letters if f".{tenant}." in letter["subject"]]


def eventually(probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def wait_until_gone(process_group: int, timeout: float = 15.0) -> None:
    """Stack.stop() returns when the Procfile's shell has exited; its worker may still finish a fetch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(process_group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise TimeoutError(f"process group {process_group} still running")


def thread(tenant: uuid.UUID, visitor: uuid.UUID) -> list[tuple[int, str]]:
    with tenant_session(tenant) as session:
        return [(m.seq, m.body) for m in session.scalars(thread_after(visitor, 0))]


def set_last_seq(tenant: uuid.UUID, visitor: uuid.UUID, last_seq: int) -> None:
    # No action sets a visitor's counter: this is the damage (say, a partial restore) and the admin's repair.
    with tenant_session(tenant) as session:
        session.execute(update(Visitor).where(Visitor.id == visitor).values(last_seq=last_seq))
        session.commit()


@dataclass
class Poisoned:
    tenant: uuid.UUID
    ann: uuid.UUID  # three good messages
    bob: uuid.UUID  # one message that violates uq_messages_visitor_seq until his counter is repaired
    malformed: dict[str, Any]
    conflicting: dict[str, Any]


@pytest.fixture(scope="module")
def poisoned(stack: Stack) -> Poisoned:
    """One batch for the real store worker: ann's three messages, a malformed one and one of bob's that
    cannot be stored; returned once both bad ones are dead letters."""
    tenant = new_tenant()
    ann, bob = new_visitor(tenant), new_visitor(tenant)
    with tenant_session(tenant) as session:
        do_store_messages(session, [Inbound(bob, "b1", "bob 1")])
        session.commit()
    set_last_seq(tenant, bob, 0)

    async def publish() -> None:
        nc = await nats.connect(stack.env["NATS_URL"])

        async def send(item: Inbound) -> None:
            subject, msg_id = (
                subjects.inbound(tenant, item.visitor_id),
                subjects.inbound_msg_id(item.visitor_id, item.client_id),
            )
            await bus.publish_durable(nc, subject, item.payload(), msg_id)

        await send(Inbound(ann, "a1", "ann 1"))
        bad_id = subjects.inbound_msg_id(ann, "bad")
        await nc.jetstream().publish(subjects.inbound(tenant, ann), b"{not json", headers={"Nats-Msg-Id": bad_id})
        await send(Inbound(bob, "b2", "bob 2"))
        await send(Inbound(ann, "a2", "ann 2"))
        await send(Inbound(ann, "a3", "ann 3"))
        await nc.close()

    # The worker finds all five waiting when it starts, and fetches them as one batch.
    group = stack.processes["worker"].pid
    stack.stop("worker")
    wait_until_gone(group)
    try:
        asyncio.run(publish())
    finally:
        stack.start("worker", parse_procfile((ROOT / "Procfile").read_text()).processes["worker"])
    letters = eventually(lambda: dead_letters_of(stack, tenant), lambda found: len(found) >= 2)
    assert len(letters) == 2, stack.logs()
    malformed, conflicting = sorted(letters, key=lambda letter: letter["subject"] != subjects.inbound(tenant, ann))
    return Poisoned(tenant, ann, bob, malformed, conflicting)


def test_a_poison_message_is_dead_lettered_and_the_rest_of_its_batch_is_stored(poisoned: Poisoned) -> None:
    # Ann's later messages waited for the malformed one before them (a thread is stored in order), then went in.
    stored = eventually(lambda: thread(poisoned.tenant, poisoned.ann), lambda found: len(found) >= 3)
    assert stored == [(1, "ann 1"), (2, "ann 2"), (3, "ann 3")]
    assert poisoned.malformed["subject"] == subjects.inbound(poisoned.tenant, poisoned.ann)
    assert poisoned.malformed["preview"] == "{not json"
    assert poisoned.malformed["error"].startswith("JSONDecodeError: ")
    assert poisoned.conflicting["subject"] == subjects.inbound(poisoned.tenant, poisoned.bob)
    assert "IntegrityError" in poisoned.conflicting["error"]
    assert "uq_messages_visitor_seq" in poisoned.conflicting["error"]
    for letter in (poisoned.malformed, poisoned.conflicting):
        assert (letter["stream"], letter["consumer"]) == (subjects.IN_STREAM, subjects.STORE_CONSUMER)
        assert letter["deliveries"] == subjects.DEAD_AFTER
        assert letter["time"]


def test_a_dead_letter_replayed_after_its_cause_is_fixed_is_stored_once(stack: Stack, poisoned: Poisoned) -> None:
    set_last_seq(poisoned.tenant, poisoned.bob, 1)

    out = deskbell(stack, "dead", "replay", str(poisoned.conflicting["seq"]))

    assert out.strip() == f"{poisoned.conflicting['seq']}: replayed to {poisoned.conflicting['subject']}"
    stored = eventually(lambda: thread(poisoned.tenant, poisoned.bob), lambda found: len(found) == 2)
    assert stored == [(1, "bob 1"), (2, "bob 2")]
    assert [letter["seq"] for letter in dead_letters_of(stack, poisoned.tenant)] == [poisoned.malformed["seq"]]


def test_a_batch_slower_than_ack_wait_stays_with_its_worker(nats_server: NatsServer) -> None:
    seen: list[tuple[bytes, int]] = []

    async def slow(nc: Client, msgs: list[Msg]) -> None:
        seen.extend((msg.data, msg.metadata.num_delivered) for msg in msgs)
        await asyncio.sleep(2.5)  # two and a half ack_waits

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="SLOW", subjects=["slow.>"], retention=RetentionPolicy.WORK_QUEUE))
        await js.add_consumer(
            "SLOW", ConsumerConfig(durable_name="slow", ack_policy=AckPolicy.EXPLICIT, ack_wait=1.0, max_deliver=5)
        )
        await js.publish("slow.job", b"job")
        stop = asyncio.Event()
        workers = [asyncio.create_task(base.consume(nc, "SLOW", "slow", slow, stop)) for _ in range(2)]
        await asyncio.sleep(4.5)  # the batch, then more than one ack_wait in which a redelivery would show
        stop.set()
        await asyncio.gather(*workers)
        info = await js.consumer_info("SLOW", "slow")
        await nc.close()
        assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (0, 0, 0)

    asyncio.run(scenario())
    assert seen == [(b"job", 1)]


def test_a_database_outage_holds_the_batch_and_spends_no_delivery(
    nats_server: NatsServer, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Longer than ack_wait and than DEAD_AFTER retries: the message is stored on its first delivery."""
    monkeypatch.setattr(base, "OUTAGE_RETRY_SECONDS", (0.05, 0.2))
    away = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/deskbell", poolclass=NullPool)
    attempts: list[int] = []
    handled: list[tuple[bytes, int]] = []
    back_at = time.monotonic() + 3.0  # the database answers again after 3 s (ack_wait is 1 s)

    def select_one(db: Engine) -> None:
        with db.connect() as connection:
            connection.execute(text("SELECT 1"))

    async def needs_the_database(nc: Client, msgs: list[Msg]) -> None:
        attempts.append(len(msgs))
        await asyncio.to_thread(select_one, engine(database_url) if time.monotonic() > back_at else away)
        handled.extend((msg.data, msg.metadata.num_delivered) for msg in msgs)

    async def scenario() -> tuple[int, int, int]:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await subjects.ensure_streams(js)
        await js.add_stream(StreamConfig(name="OUTAGE", subjects=["outage.>"], retention=RetentionPolicy.WORK_QUEUE))
        config = ConsumerConfig(durable_name="held", ack_policy=AckPolicy.EXPLICIT, ack_wait=1.0, max_deliver=3)
        await js.add_consumer("OUTAGE", config)
        await js.publish("outage.job", b"job")
        stop = asyncio.Event()
        workers = [asyncio.create_task(base.consume(nc, "OUTAGE", "held", needs_the_database, stop)) for _ in range(2)]
        while not handled and time.monotonic() < back_at + 10:
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*workers)
        info = await js.consumer_info("OUTAGE", "held")
        try:
            await js.get_last_msg(subjects.DEAD_STREAM, subjects.dead_letter("held"))
            dead = 1
        except nats.js.errors.NotFoundError:
            dead = 0
        await nc.close()
        return info.num_redelivered, info.num_ack_pending + info.num_pending, dead

    redelivered, left, dead = asyncio.run(scenario())
    assert handled == [(b"job", 1)]
    assert len(attempts) > subjects.DEAD_AFTER, "the outage outlasted DEAD_AFTER retries"
    assert (redelivered, left, dead) == (0, 0, 0)
