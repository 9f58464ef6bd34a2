"""Prometheus metrics: the series an operator graphs exist, and move when visitors and agents chat."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from honcho.environ import parse_procfile
from prometheus_client.parser import text_string_to_metric_families

from desk.embedded import free_port, wait_for_port
from desk.settings import ROOT
from tests.clients import logged_in_agent, start_conversation
from tests.conftest import Stack
from web import create_app


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_web_metrics_move_when_a_visitor_and_an_agent_chat(stack: Stack) -> None:
    tenant = stack.bootstrap("mia")
    agent = logged_in_agent(stack.base_url, tenant)
    before = scrape(stack.base_url + "/metrics")

    conversation_id = start_conversation(stack.base_url, tenant["site_key"], "How much is shipping?")
    assert agent.reply(conversation_id, "Free over 50 euros.").status_code == 200
    after = scrape(stack.base_url + "/metrics")

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("deskbell_messages_in_total", sender="visitor") == 1
    assert grew("deskbell_ack_latency_seconds_count", stage="acked") == 1
    assert grew("deskbell_ack_latency_seconds_count", stage="published") == 1
    assert grew("deskbell_http_request_seconds_count", route="/console/c/<uuid:conversation_id>/messages",
                method="POST", status="303") == 1  # fmt: skip
    # The visitor's socket came and went; the gauge is back where it was.
    assert value(after, "deskbell_sockets_open", kind="visitor_ws") == value(before, "deskbell_sockets_open",
                                                                            kind="visitor_ws")  # fmt: skip
    # JetStream's view, read at scrape time: the consumers exist and have nothing left over.
    assert value(after, "deskbell_jetstream_pending", consumer="store") == 0
    assert ("deskbell_jetstream_redelivered", (("consumer", "router"),)) in after
    assert ("deskbell_db_pool_in_use", ()) in after


def test_a_worker_serves_its_batch_sizes_and_store_latency(stack: Stack) -> None:
    port = free_port()
    worker = parse_procfile((ROOT / "Procfile").read_text()).processes["worker"]
    stack.start("worker-metrics", worker, env={**stack.env, "WORKER_METRICS_PORT": str(port)})
    try:
        wait_for_port(port)
        tenant = stack.bootstrap()
        deadline = time.monotonic() + 30
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        # Two workers share the consumer: send until this one has stored something.
        while value(samples, "deskbell_ack_latency_seconds_count", stage="stored") == 0:
            assert time.monotonic() < deadline, "the metrics worker never stored a message"
            start_conversation(stack.base_url, tenant["site_key"], "ping")
            samples = scrape(f"http://127.0.0.1:{port}/metrics")
        assert value(samples, "deskbell_worker_batch_size_count", consumer="store") >= 1
        assert value(samples, "deskbell_ack_latency_seconds_bucket", stage="stored", le="+Inf") >= 1
    finally:
        stack.stop("worker-metrics")


def test_metrics_from_another_machine_need_the_token(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_TOKEN", "s3cret-token")
    monkeypatch.setenv("DESKBELL_ENV", "production")
    monkeypatch.delenv("NATS_URL", raising=False)  # no NATS connection to outlive the suite's nats-server
    client = create_app().test_client()
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    refused = client.get("/metrics", base_url="https://deskbell.test", environ_base=remote)
    assert refused.status_code == 403
    assert "METRICS_TOKEN" in refused.get_json()["message"]
    assert (
        client.get(
            "/metrics", base_url="https://deskbell.test", environ_base=remote, headers={"Authorization": "Bearer wrong"}
        ).status_code
        == 403
    )
    allowed = client.get(
        "/metrics",
        base_url="https://deskbell.test",
        environ_base=remote,
        headers={"Authorization": "Bearer s3cret-token"},
    )
    assert allowed.status_code == 200
    assert re.search(r"^deskbell_http_request_seconds_bucket", allowed.text, re.M)
