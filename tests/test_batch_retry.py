"""A failed batch retried one message at a time (workers/base.py; docs/architecture.md, "When a message fails"):
only a consumer that keeps its subjects in order (the store's) hands a subject's later messages back with the
failed one; any other (the router's) lets them through at once. Real nats-server, the real consume loop."""

from __future__ import annotations

import asyncio
import time

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from desk import subjects
from desk.embedded import NatsServer
from workers import base


def first_handled_delivery_of_the_later_message(nats_server: NatsServer, stream: str, *, in_order: bool) -> int:
    """A batch of two messages of one subject whose first always fails: the delivery at which the second one
    was handled."""
    handled: list[int] = []

    async def fails_on_poison(nc: Client, msgs: list[Msg]) -> None:
        if any(msg.data == b"poison" for msg in msgs):
            raise ValueError("poison")
        handled.extend(msg.metadata.num_delivered for msg in msgs)

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await subjects.ensure_streams(js)  # DESK_DEAD, where the poison ends
        subject = f"{stream.lower()}.thread"
        await js.add_stream(StreamConfig(name=stream, subjects=[subject], retention=RetentionPolicy.WORK_QUEUE))
        config = ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT, ack_wait=5.0, max_deliver=10)
        await js.add_consumer(stream, config)
        await js.publish(subject, b"poison")
        await js.publish(subject, b"later")
        stop = asyncio.Event()
        worker = asyncio.create_task(base.consume(nc, stream, "c", fails_on_poison, stop, in_order=in_order))
        deadline = time.monotonic() + 20
        while not handled and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await worker
        await nc.close()

    asyncio.run(scenario())
    assert handled, "the later message was never handled"
    return handled[0]


def test_a_consumer_without_order_handles_a_failed_messages_later_ones_on_their_first_delivery(
    nats_server: NatsServer,
) -> None:
    assert first_handled_delivery_of_the_later_message(nats_server, "UNORDERED", in_order=False) == 1


def test_an_in_order_consumer_hands_a_failed_messages_later_ones_back_with_it(nats_server: NatsServer) -> None:
    assert first_handled_delivery_of_the_later_message(nats_server, "ORDERED", in_order=True) > 1
