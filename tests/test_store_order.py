"""The store worker keeps a thread in the order JetStream accepted it (workers/store.py, docs/architecture.md
"Order"), on a real nats-server and PostgreSQL: two pull subscriptions on the `store` consumer play two workers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from desk import bus, subjects
from desk.actions.messages import Inbound
from desk.db import tenant_session
from desk.embedded import NatsServer
from desk.queries.conversations import thread_after
from tests.factories import new_visitor
from workers import store


@pytest.fixture
def own_nats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A nats-server of this test alone: no running worker of the stack takes these messages. Its stream
    sequences start at 1 again, so the handler's memory of what it stored starts empty too."""
    monkeypatch.setattr(store, "STORED", store._Recent(100_000))
    server = NatsServer(tmp_path / "nats").start()
    yield server.url
    server.stop()


@pytest.fixture
def hold_ms(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """DESKBELL_STORE_ORDER_HOLD_MS, short: how long a worker holds a message whose predecessor is elsewhere."""
    monkeypatch.setenv("DESKBELL_STORE_ORDER_HOLD_MS", "300")
    store._ordering.cache_clear()
    yield 300
    store._ordering.cache_clear()


def thread(tenant: uuid.UUID, visitor: uuid.UUID) -> list[tuple[int, str]]:
    with tenant_session(tenant) as session:
        return [(m.seq, m.body) for m in session.scalars(thread_after(visitor, 0))]


def test_a_message_waits_for_the_earlier_one_another_worker_holds(
    tenant: uuid.UUID, own_nats: str, hold_ms: int
) -> None:
    visitor = new_visitor(tenant)

    async def scenario() -> None:
        nc = await bus.connect(own_nats, "test")
        js = nc.jetstream()
        await subjects.ensure_streams(js, replicas=1)
        for i in (1, 2):
            item = Inbound(visitor, f"m-{i}", f"message {i}")
            await js.publish(subjects.inbound(tenant, visitor), bus.encode(item.payload()))
        worker_a = await js.pull_subscribe_bind(subjects.STORE_CONSUMER, subjects.IN_STREAM)
        worker_b = await js.pull_subscribe_bind(subjects.STORE_CONSUMER, subjects.IN_STREAM)
        [first] = await worker_a.fetch(1)
        [second] = await worker_b.fetch(1)

        await store.handle(nc, [second])  # worker A has not stored the first one yet
        assert thread(tenant, visitor) == [], "the later message is not stored before the earlier one"
        assert second.is_acked, "it was handed back to the stream (nak), to come again"

        await store.handle(nc, [first])
        await first.ack()
        [again] = await worker_b.fetch(1, timeout=10)
        assert again.metadata.num_delivered == 2
        await store.handle(nc, [again])
        await again.ack()
        assert thread(tenant, visitor) == [(1, "message 1"), (2, "message 2")]
        await nc.close()

    asyncio.run(scenario())


def test_a_batch_arriving_out_of_stream_order_is_stored_in_stream_order(tenant: uuid.UUID, own_nats: str) -> None:
    """A redelivered earlier message may come in a batch after later ones: it still takes the earlier seq."""
    visitor = new_visitor(tenant)

    async def scenario() -> None:
        nc = await bus.connect(own_nats, "test")
        js = nc.jetstream()
        await subjects.ensure_streams(js, replicas=1)
        for i in (1, 2, 3):
            item = Inbound(visitor, f"m-{i}", f"message {i}")
            await js.publish(subjects.inbound(tenant, visitor), bus.encode(item.payload()))
        worker = await js.pull_subscribe_bind(subjects.STORE_CONSUMER, subjects.IN_STREAM)
        msgs = await worker.fetch(3)
        await store.handle(nc, list(reversed(msgs)))
        for msg in msgs:
            await msg.ack()
        assert thread(tenant, visitor) == [(1, "message 1"), (2, "message 2"), (3, "message 3")]
        await nc.close()

    asyncio.run(scenario())


def test_the_order_settings_have_defaults_and_refuse_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    from desk import settings

    monkeypatch.delenv("DESKBELL_STORE_ORDER_HOLD_MS", raising=False)
    monkeypatch.delenv("DESKBELL_STORE_ORDER_RETRY_MAX_MS", raising=False)
    assert settings.load().ordering == settings.Ordering(hold_ms=2000, retry_max_ms=30000)
    for name, value in (("DESKBELL_STORE_ORDER_HOLD_MS", "-1"), ("DESKBELL_STORE_ORDER_RETRY_MAX_MS", "100")):
        with monkeypatch.context() as env:
            env.setenv(name, value)
            with pytest.raises(RuntimeError, match="DESKBELL_STORE_ORDER"):
                settings.load()


def test_a_threads_next_message_is_not_held_behind_one_this_worker_just_stored(
    tenant: uuid.UUID, own_nats: str
) -> None:
    """JetStream removes an acked message from the work queue a moment after the ack; the worker that stored it
    does not wait for that before storing the next message of the thread, in its next batch."""
    visitors = [new_visitor(tenant) for _ in range(5)]
    held_before = store.metrics.ORDER_HELD.labels("held")._value.get()
    checks = store.metrics.ORDER_CHECKS
    by_consumer, by_stream = checks.labels("consumer")._value.get(), checks.labels("stream")._value.get()

    async def scenario() -> None:
        nc = await bus.connect(own_nats, "test")
        js = nc.jetstream()
        await subjects.ensure_streams(js, replicas=1)
        for i in range(1, 41):
            for visitor in visitors:
                item = Inbound(visitor, f"m-{i}", f"message {i}")
                await js.publish(subjects.inbound(tenant, visitor), bus.encode(item.payload()))
        worker = await js.pull_subscribe_bind(subjects.STORE_CONSUMER, subjects.IN_STREAM)
        for _ in range(20):
            batch = await worker.fetch(10)
            await store.handle(nc, batch)
            for msg in batch:  # as workers/base.py does after the handler; the next fetch follows at once
                await msg.ack()
        await nc.close()

    asyncio.run(scenario())
    for visitor in visitors:
        assert thread(tenant, visitor) == [(i, f"message {i}") for i in range(1, 41)]
    assert store.metrics.ORDER_HELD.labels("held")._value.get() == held_before, "no message was held"
    # One worker: every batch was found in turn by one look at the consumer, not a stream lookup per message.
    assert checks.labels("consumer")._value.get() - by_consumer == 20
    assert checks.labels("stream")._value.get() == by_stream
