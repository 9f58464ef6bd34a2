"""The store worker: persists messages from DESK_IN, then publishes them as events and routing jobs.

docs/architecture.md, steps 4-5 and "Order". Idempotent: a redelivered message is found by (visitor, client_id)
and its events are published again, so a crash between commit and publish loses nothing, and a replayed dead
letter is stored once.

In order: a visitor's thread (agents' replies too) is its own subject, desk.in.<tenant>.<visitor>, and its
messages are stored in the order of their stream sequence, whichever worker holds them. A message is stored
only once no earlier message of its subject is left in DESK_IN (a work queue: what is acked is gone, a moment
after the ack) but those this worker stored itself, so another worker's batch, a redelivery or a retry can no
longer let a later message take an earlier seq.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from collections import defaultdict, deque

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from desk import bus, metrics, settings, subjects
from desk.actions.messages import Inbound, Stored, as_event, do_store_messages
from desk.db import tenant_session

log = logging.getLogger(__name__)

MSG_GET = f"$JS.API.STREAM.MSG.GET.{subjects.IN_STREAM}"
CONSUMER_INFO = f"$JS.API.CONSUMER.INFO.{subjects.IN_STREAM}.{subjects.STORE_CONSUMER}"
# Past this many sequences between the ack floor and a batch, the batch is checked message by message.
ACCOUNT_SPAN = 4 * 200  # four of workers/base.py's batches
RETRY_FIRST_SECONDS = 0.25  # a handed-back message's first redelivery delay; doubles per delivery
RECHECK_SECONDS = (0.01, 0.2)  # first and longest pause between looks at the stream while holding


@functools.cache
def _ordering() -> settings.Ordering:
    return settings.load().ordering


def _store(tenant_id: uuid.UUID, batch: list[Inbound]) -> list[Stored | None]:
    with tenant_session(tenant_id) as session:
        results = do_store_messages(session, batch)
        session.commit()
        return results


def _stream_seq(msg: Msg) -> int:
    return msg.metadata.sequence.stream


async def _next_waiting(nc: Client, subject: str, from_seq: int) -> int | None:
    """The stream sequence of the first message of `subject` still in DESK_IN at or after `from_seq`.

    JetStream's STREAM.MSG.GET, asked of the stream's leader (a replica answering a direct get may lag), read
    for its sequence alone: nats-py's get_msg() also decodes the message, which costs more than the request.
    """
    request = json.dumps({"seq": from_seq, "next_by_subj": subject}).encode()
    try:
        reply = await nc.request(MSG_GET, request, timeout=bus.PUBLISH_TIMEOUT)
    except nats.errors.NoRespondersError as exc:
        raise nats.errors.TimeoutError from exc  # JetStream is away: an outage, retried by workers/base.py
    answer = json.loads(reply.data)
    if "error" in answer:
        if answer["error"].get("code") == 404:
            return None
        raise nats.js.errors.APIError.from_error(answer["error"])
    return int(answer["message"]["seq"])


class _Recent:
    """The stream sequences of the messages this worker committed lately. JetStream removes an acked message
    from the work queue a moment after the ack (in most cases it is still there when the next batch looks), so
    without this a thread's next message would be held behind one that is already stored."""

    def __init__(self, size: int) -> None:
        self.size, self.seqs, self.order = size, set[int](), deque[int]()

    def add(self, seqs: list[int]) -> None:
        self.seqs.update(seqs)
        self.order.extend(seqs)
        while len(self.order) > self.size:
            self.seqs.discard(self.order.popleft())

    def __contains__(self, seq: int) -> bool:
        return seq in self.seqs


STORED = _Recent(100_000)


async def _first_unstored(nc: Client, subject: str, start: int) -> int | None:
    """`_next_waiting`, passing over the messages this worker has stored already."""
    while (first := await _next_waiting(nc, subject, start)) is not None and first in STORED:
        start = first + 1
    return first


async def _in_turn(nc: Client, subject: str, mine: list[Msg]) -> list[Msg]:
    """Of `mine` (one subject, in stream order), the leading run with nothing of the subject before it still
    waiting in the stream: those may be stored now, in this order."""
    # Ask for each message at once: is the first message left after its predecessor (or the start) itself?
    starts = [1] + [_stream_seq(m) + 1 for m in mine[:-1]]
    found = await asyncio.gather(*(_first_unstored(nc, subject, start) for start in starts))
    turn: list[Msg] = []
    for msg, first in zip(mine, found, strict=True):
        # None or later: this message itself was acked meanwhile (a duplicate delivery); storing is idempotent.
        if first is not None and first < _stream_seq(msg):
            break
        turn.append(msg)
    return turn


async def _all_accounted_for(nc: Client, ordered: list[Msg]) -> bool:
    """Is every message of DESK_IN up to the last of `ordered` (in stream order) acked, one of them, or stored
    by this worker? Then each of them is in turn, and one request to the consumer said so instead of one
    stream lookup per message: the usual case of a single worker, whose previous batch's acks are on their way.

    The consumer delivers in stream order, so every message before the last of ours was delivered before it;
    those not acked are still pending, above the ack floor. Anything above the floor that is neither ours nor
    stored here (another worker's, one waiting for redelivery, or a gap) sends the batch the slow way."""
    try:
        reply = await nc.request(CONSUMER_INFO, b"", timeout=bus.PUBLISH_TIMEOUT)
    except nats.errors.NoRespondersError as exc:
        raise nats.errors.TimeoutError from exc  # JetStream is away: an outage, retried by workers/base.py
    floor = json.loads(reply.data).get("ack_floor", {}).get("stream_seq")
    last = _stream_seq(ordered[-1])
    if floor is None or last - floor > ACCOUNT_SPAN:
        return False
    ours = {_stream_seq(m) for m in ordered}
    return all(seq in ours or seq in STORED for seq in range(floor + 1, last + 1))


async def _split(nc: Client, msgs: list[Msg]) -> tuple[list[Msg], list[Msg]]:
    """(in turn, waiting for an earlier message held elsewhere), both in stream order."""
    ordered = sorted(msgs, key=_stream_seq)
    if await _all_accounted_for(nc, ordered):
        metrics.ORDER_CHECKS.labels("consumer").inc()
        return ordered, []
    metrics.ORDER_CHECKS.labels("stream").inc()
    by_subject: dict[str, list[Msg]] = defaultdict(list)
    for msg in ordered:
        by_subject[msg.subject].append(msg)
    turns = await asyncio.gather(*(_in_turn(nc, s, mine) for s, mine in by_subject.items()))
    ready = {id(m) for turn in turns for m in turn}
    return [m for m in ordered if id(m) in ready], [m for m in ordered if id(m) not in ready]


async def _store_and_publish(nc: Client, msgs: list[Msg]) -> None:
    """Store `msgs` (in stream order), then publish their events and routing jobs, and flush."""
    by_tenant: dict[uuid.UUID, list[Inbound]] = defaultdict(list)
    received_at: dict[uuid.UUID, list[float]] = defaultdict(list)
    seqs: dict[uuid.UUID, list[int]] = defaultdict(list)
    for msg in msgs:
        # A malformed message raises: workers/base.py retries it alone and then keeps it as a dead letter.
        tenant_id = subjects.tenant_of(msg.subject)
        by_tenant[tenant_id].append(Inbound.from_payload(json.loads(msg.data)))
        received_at[tenant_id].append(msg.metadata.timestamp.timestamp())
        seqs[tenant_id].append(_stream_seq(msg))
    js = nc.jetstream()
    for tenant_id, batch in by_tenant.items():
        results = await asyncio.to_thread(_store, tenant_id, batch)
        STORED.add(seqs[tenant_id])
        for received in received_at[tenant_id]:  # JetStream's receive time -> committed
            metrics.ACK_LATENCY.labels("stored").observe(max(0.0, time.time() - received))
        for item, stored in zip(batch, results, strict=True):
            if stored is None:
                log.error("dropping message for unknown visitor %s of tenant %s", item.visitor_id, tenant_id)
                continue
            event = as_event(stored.message)
            await nc.publish(
                subjects.visitor_events(tenant_id, item.visitor_id), bus.encode({"kind": "message", "message": event})
            )
            # The consoles' copy carries the alert facts, so that no console queries PostgreSQL per message.
            for_agents = {"kind": "message", "message": event, "alert": stored.alert()}
            await nc.publish(subjects.agent_events(tenant_id), bus.encode(for_agents))
            conversation_id = event["conversation_id"]
            if stored.new_conversation or not stored.created:
                # Re-sent on redelivery too: the router ignores conversations that are already assigned.
                await js.publish(
                    subjects.route_job(tenant_id),
                    bus.encode({"conversation_id": conversation_id}),
                    headers={"Nats-Msg-Id": subjects.route_msg_id(conversation_id)},
                )
    await bus.flush(nc)


async def handle(nc: Client, msgs: list[Msg]) -> None:
    """Store what is in turn; hold the rest (kept in progress by workers/base.py) while the messages before
    them are stored elsewhere, then store them too, or hand them back to the stream to come again."""
    # A retried batch may hold messages this handler settled on an earlier attempt.
    pending = [m for m in msgs if not m.is_acked]
    if not pending:
        return
    ordering = _ordering()
    deadline = time.monotonic() + ordering.hold_ms / 1000
    pause, longest = RECHECK_SECONDS
    counted: set[int] = set()
    while pending:
        in_turn, waiting = await _split(nc, pending)
        # The consumer's last delivery: stored now rather than never (JetStream would not deliver it again).
        last = [m for m in waiting if m.metadata.num_delivered >= subjects.MAX_DELIVER]
        if last:
            log.warning("storing %d message(s) out of turn at their last delivery", len(last))
            metrics.ORDER_HELD.labels("out_of_turn").inc(len(last))
            in_turn = sorted(in_turn + last, key=_stream_seq)
            waiting = [m for m in waiting if m.metadata.num_delivered < subjects.MAX_DELIVER]
        if in_turn:
            await _store_and_publish(nc, in_turn)
        if not waiting:
            return  # workers/base.py acks the batch
        # Others wait for these: ack them now, not when the whole batch is done.
        for msg in in_turn:
            await msg.ack()
        metrics.ORDER_HELD.labels("held").inc(len([m for m in waiting if id(m) not in counted]))
        counted.update(id(m) for m in waiting)
        pending = waiting
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(pause)
        pause = min(pause * 2, longest)
    # Held long enough: the earlier message may be waiting for a redelivery that this worker must fetch.
    for msg in pending:
        delay = min(RETRY_FIRST_SECONDS * 2 ** (msg.metadata.num_delivered - 1), ordering.retry_max_ms / 1000)
        await msg.nak(delay=delay)
    metrics.ORDER_HELD.labels("handed_back").inc(len(pending))
    log.info("handed back %d message(s) waiting for earlier ones of their thread", len(pending))
