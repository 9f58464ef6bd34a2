"""How long routing's database work takes with a long line: one drain that assigns N waiting conversations to
agents, and reading every waiting visitor's place (what the router does after each drain and each sweep).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.routing [--waiting 500]

Makes a database of its own (dropped at the end), a tenant, agents and waiting conversations made by the real
actions, and prints figures; asserts nothing (docs/architecture.md, "Routing and the queue").
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time

import psycopg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waiting", type=int, default=500, help="conversations in the line")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--max-chats", type=int, default=5)
    args = parser.parse_args()
    server = os.environ["DATABASE_URL"]
    name = f"deskbell_bench_routing_{secrets.token_hex(3)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.rsplit("/", 1)[0] + "/" + name
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_urlsafe(16))
    try:
        run(url, args.waiting, args.agents, args.max_chats)
    finally:
        from desk.db import engine

        engine(None).dispose()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(url: str, waiting: int, agents: int, max_chats: int) -> None:
    from sqlalchemy import select, update

    from desk import migrate
    from desk.actions.routing import do_drain_queue, do_enqueue
    from desk.db import tenant_session
    from desk.models import Conversation, User
    from desk.queries.queue import queue_places
    from tests.factories import new_agent, new_conversation, new_tenant

    migrate.upgrade(url)
    tenant = new_tenant()
    people = [new_agent(tenant, presence="away") for _ in range(agents)]
    chats = [new_conversation(tenant) for _ in range(waiting)]
    with tenant_session(tenant) as session:
        for chat in chats:
            do_enqueue(session, chat)
        session.execute(update(User).where(User.id.in_(people)).values(max_chats=max_chats))
        session.commit()

    places = []
    for _ in range(5):
        with tenant_session(tenant) as session:
            started = time.perf_counter()
            queue_places(session)
            places.append(time.perf_counter() - started)
    print(f"queue places, {waiting} waiting, no agent online: median {statistics.median(places) * 1000:.1f} ms")

    with tenant_session(tenant) as session:
        session.execute(update(User).where(User.id.in_(people)).values(presence="online"))
        session.commit()
    with tenant_session(tenant) as session:
        started = time.perf_counter()
        assigned = do_drain_queue(session, tenant)
        took = time.perf_counter() - started
    room = f"{agents} agents (max {max_chats})"
    print(f"one drain: {len(assigned)} of {waiting} assigned to {room} in {took * 1000:.0f} ms")

    drains = []
    for _ in range(10):  # the common case: one chat ends, and the drain gives its agent the next in line
        with tenant_session(tenant) as session:
            one = select(Conversation.id).where(Conversation.status == "open", Conversation.assignee_id.is_not(None))
            session.execute(
                update(Conversation).where(Conversation.id == one.limit(1).scalar_subquery()).values(status="resolved")
            )
            session.commit()
        with tenant_session(tenant) as session:
            started = time.perf_counter()
            if os.environ.get("PROFILE") and not drains:
                import cProfile

                profile = cProfile.Profile()
                moved = profile.runcall(do_drain_queue, session, tenant)
                profile.print_stats("cumulative")
            else:
                moved = do_drain_queue(session, tenant)
            drains.append(time.perf_counter() - started)
        assert len(moved) == 1, moved
    print(
        f"a drain after one chat ends, {len(chats) - len(assigned) - 10}+ still waiting: "
        f"median {statistics.median(drains) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
