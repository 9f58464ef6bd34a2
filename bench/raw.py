"""The raw limits under Deskbell, measured on the same servers in the same run (issue 10): JetStream publish
with ack and pull-and-ack (nats-py, the stack's own nats-server: config/nats-server.conf, `sync_interval:
always`), and PostgreSQL inserts (psycopg, synchronous commit) one commit per row and batched.

    .venv/bin/python -m bench.raw --nats nats://127.0.0.1:4222 --database postgresql://…/db

`python -m bench` runs it beside bench/load.py and prints Deskbell's figures as ratios of these. Each figure
uses what the product uses: a file stream with a duplicate window and Nats-Msg-Id headers, a durable pull
consumer acked one message at a time after a batch fetch, and a table shaped like `messages` with its unique key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import nats
import psycopg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from bench.load_report import percentiles

STREAM = "BENCH_RAW"
PAYLOAD = (  # the size and shape of a visitor message on desk.in.*
    b'{"visitor_id":"6f1c0b9e-2d4a-4c1e-9a57-0b6a1f3e2c11","client_id":"v1-17",'
    b'"body":"load v1-17","sender":"visitor"}'
)
FETCH = 200  # as workers/base.py
WINDOW = 256  # publishes in flight at once, for the pipelined rate
PG_BATCH = 200


async def jetstream(url: str, seconds: float = 3.0) -> dict[str, Any]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=STREAM,
            subjects=["bench.raw.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=120,
        )
    )
    try:
        # One publish at a time, waiting for each ack: what one socket's messages see.
        latencies, n = [], 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.monotonic()
            await js.publish(f"bench.raw.{n % 64}", PAYLOAD, headers={"Nats-Msg-Id": f"s{n}"})
            latencies.append(time.monotonic() - began)
            n += 1
        sequential = {"per_s": round(n / seconds, 1), "ack_ms": percentiles(latencies)}

        # Many in flight: what many sockets together can get.
        limit, count = asyncio.Semaphore(WINDOW), 0

        async def one(i: int) -> None:
            nonlocal count
            try:
                await js.publish(f"bench.raw.{i % 64}", PAYLOAD, headers={"Nats-Msg-Id": f"p{i}"})
                count += 1
            finally:
                limit.release()

        tasks, i, began = [], 0, time.monotonic()
        while time.monotonic() - began < seconds:
            await limit.acquire()
            tasks.append(asyncio.create_task(one(i)))
            i += 1
        await asyncio.gather(*tasks)
        pipelined = {"per_s": round(count / (time.monotonic() - began), 1), "window": WINDOW}

        # Pull and ack what was published, as a worker does (without the work in between).
        sub = await js.pull_subscribe("bench.raw.>", "bench_raw", config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT))
        acked, began = 0, time.monotonic()
        while time.monotonic() - began < seconds:
            try:
                msgs = await sub.fetch(FETCH, timeout=1)
            except nats.errors.TimeoutError:
                break
            for msg in msgs:
                await msg.ack()
            acked += len(msgs)
        await nc.flush()
        pull = {"per_s": round(acked / (time.monotonic() - began), 1), "batch": FETCH}
    finally:
        await js.delete_stream(STREAM)
        await nc.close()
    return {"publish_ack_sequential": sequential, "publish_ack_pipelined": pipelined, "pull_ack": pull}


def postgres(database_url: str, seconds: float = 3.0) -> dict[str, Any]:
    """Inserts into a logged table shaped like `messages` (a temporary table would skip the WAL)."""
    table = f"bench_raw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id bigserial PRIMARY KEY, visitor_id uuid NOT NULL, client_id text NOT NULL, "
            "seq int NOT NULL, body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), "
            "UNIQUE (visitor_id, client_id), UNIQUE (visitor_id, seq))"
        )
        conn.commit()
        try:
            visitor = uuid.uuid4()
            n, latencies, end = 0, [], time.monotonic() + seconds
            while time.monotonic() < end:
                began = time.monotonic()
                conn.execute(
                    f"INSERT INTO {table} (visitor_id, client_id, seq, body) VALUES (%s, %s, %s, %s)",
                    (visitor, f"c{n}", n, "load"),
                )
                conn.commit()
                latencies.append(time.monotonic() - began)
                n += 1
            single = {"per_s": round(n / seconds, 1), "commit_ms": percentiles(latencies)}
            rows, began = 0, time.monotonic()
            while time.monotonic() - began < seconds:
                with conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO {table} (visitor_id, client_id, seq, body) VALUES (%s, %s, %s, %s)",
                        [(visitor, f"b{rows + k}", n + rows + k, "load") for k in range(PG_BATCH)],
                    )
                conn.commit()
                rows += PG_BATCH
            batched = {"rows_per_s": round(rows / (time.monotonic() - began), 1), "batch": PG_BATCH}
        finally:
            conn.rollback()
            conn.execute(f"DROP TABLE {table}")
            conn.commit()
    return {"insert_commit_each": single, "insert_batched": batched}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nats", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    figures = {"jetstream": asyncio.run(jetstream(args.nats, args.seconds)), "postgres": postgres(args.database)}
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
