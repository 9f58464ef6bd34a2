"""The mailer: sends the emails of the outbox (desk/mail_outbox.py; docs/architecture.md, "Email").

Every worker process runs two tasks (workers/__main__.py):

- `sweep`: every DESKBELL_MAIL_SWEEP_SECONDS (sooner when the sweeper marks a chat missed), queues agents'
  replies to visitors followed by email, and hands each queued email to JetStream (`desk.mail.<tenant>`, one
  message per email, de-duplicated by its id).
- `consume`: pulls those jobs from the durable consumer `mailer` and sends each one (desk.mail.send, behind the
  mail server's circuit breaker, in a thread: a dead mail server costs a thread its timeout, never the event
  loop, and once the breaker is open not even that). A failed send is nak'd with a growing delay; after
  DESKBELL_MAIL_ATTEMPTS tries the email is marked failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import timedelta

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from desk import bus, mail_outbox, metrics, settings, subjects
from desk.actions import lapses
from desk.db import system_session
from desk.mail_outbox import Job
from workers.base import OUTAGES

log = logging.getLogger(__name__)

FETCH = 10
FETCH_WAIT_SECONDS = 2.0
_wake = asyncio.Event()


def _missed(mark: lapses.Missed) -> None:
    """The sweeper's missed-chat hook: queue the email now (a row, committed), and wake the sweep to send it."""
    mail_outbox.do_queue_missed(mark)
    _wake.set()


lapses.MISSED_HOOKS.append(_missed)


def _queue_and_take(config: settings.Settings) -> list[Job]:
    with system_session() as session:  # every tenant's outbox, on purpose
        away = timedelta(minutes=config.mail.away_minutes) if config.mail.away_minutes else None
        mail_outbox.do_queue_replies(session, timedelta(hours=config.mail.lookback_hours), away)
        return mail_outbox.do_take_unpublished(session, timedelta(seconds=config.mail.republish_seconds))


async def sweep_once(nc: Client, config: settings.Settings) -> int:
    """Queue what is due and hand it to JetStream; returns how many emails were handed over."""
    jobs = await asyncio.to_thread(_queue_and_take, config)
    js = nc.jetstream()
    failed: list[Job] = []
    for job in jobs:
        payload = {"tenant_id": str(job.tenant_id), "delivery_id": job.delivery_id}
        try:
            await js.publish(
                subjects.mail_job(job.tenant_id),
                bus.encode(payload),
                headers={"Nats-Msg-Id": subjects.mail_msg_id(job.delivery_id)},
                timeout=bus.PUBLISH_TIMEOUT,
            )
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            log.warning("mailer: email %d not handed to JetStream (%s); next sweep", job.delivery_id, exc)
            failed.append(job)
    if failed:
        await asyncio.to_thread(mail_outbox.do_forget_published, failed)
    return len(jobs) - len(failed)


async def sweep(nc: Client, stop: asyncio.Event) -> None:
    config = settings.load()
    while not stop.is_set():
        _wake.clear()
        try:
            await sweep_once(nc, config)
        except OUTAGES as exc:
            log.warning("mailer: sweep skipped: %s: %s", type(exc).__name__, exc)
        except Exception:
            log.exception("mailer: sweep failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(stop, _wake), config.mail.sweep_seconds)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def handle(msg: Msg, config: settings.Settings) -> None:
    """Send one email and settle its job: ack when sent or given up on, nak with the backoff's delay otherwise."""
    try:
        data = json.loads(msg.data)
        job = Job(tenant_id=uuid.UUID(data["tenant_id"]), delivery_id=int(data["delivery_id"]))
    except (ValueError, KeyError, TypeError):
        log.error("mailer: malformed job %r dropped", msg.data[:200])
        await msg.term()
        return
    last_try = msg.metadata.num_delivered >= config.mail.attempts
    try:
        outcome = await asyncio.to_thread(mail_outbox.deliver, job, config, last_try)
    except OUTAGES as exc:  # the database: try again soon, it is not the email's fault
        log.warning("mailer: email %d: %s: %s; retrying", job.delivery_id, type(exc).__name__, exc)
        await msg.nak(delay=config.mail.retry_seconds)
        return
    if outcome.status == "retry":
        delay = mail_outbox.retry_delay(config.mail, outcome.attempts)
        log.warning("mailer: email %d not sent (%s); try %d again in %.0f s", job.delivery_id, outcome.error,
                    outcome.attempts + 1, delay)  # fmt: skip
        await msg.nak(delay=delay)
        return
    if outcome.status == "failed":
        log.error("mailer: email %d failed for good: %s", job.delivery_id, outcome.error)
        metrics.ERRORS.labels(subjects.MAIL_CONSUMER, "mail_failed").inc()
    await msg.ack()


async def consume(nc: Client, stop: asyncio.Event) -> None:
    """The `mailer` consumer's loop; jobs are handled one after another, each in a thread."""
    config = settings.load()
    while True:  # a release that has not made the stream yet must not take the chat's consumers down with it
        try:
            sub = await nc.jetstream().pull_subscribe_bind(subjects.MAIL_CONSUMER, subjects.MAIL_STREAM)
            break
        except (nats.errors.Error, OSError) as exc:
            log.error("mailer: no consumer %s on %s (%s): run the release step", subjects.MAIL_CONSUMER,
                      subjects.MAIL_STREAM, exc)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 30)
            if stop.is_set():
                return
    while not stop.is_set():
        try:
            msgs = await sub.fetch(FETCH, timeout=FETCH_WAIT_SECONDS)
        except TimeoutError:  # nothing to fetch: nats-py raises its own TimeoutError or, at times, asyncio's
            continue
        except (nats.errors.Error, OSError) as exc:
            log.warning("mailer: fetch failed (%s); retrying", exc)
            await asyncio.sleep(0.5)
            continue
        for msg in msgs:
            if stop.is_set():
                await msg.nak()
                continue
            try:
                await handle(msg, config)
            except Exception:
                log.exception("mailer: job %s failed", msg.subject)
                metrics.ERRORS.labels(subjects.MAIL_CONSUMER, "job_failed").inc()
                with contextlib.suppress(Exception):
                    if msg.metadata.num_delivered >= config.mail.attempts:  # a job that always fails: let it go
                        await msg.term()
                    else:
                        await msg.nak(delay=config.mail.retry_seconds)


async def run(nc: Client, stop: asyncio.Event) -> None:
    """Both tasks, until `stop` is set."""
    await asyncio.gather(sweep(nc, stop), consume(nc, stop))
