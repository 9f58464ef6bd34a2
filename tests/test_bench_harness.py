"""The load harness (bench/load.py) runs against the real stack and reports sane figures, so it cannot rot.

A few seconds of light load: every visitor message is acked and stored once, every agent reply reaches its
visitor, nothing errs, and the JSON and the chart are written. No figure is judged: that is the benchmark's job.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from bench.load import UNLIMITED, Options, RunningStack, run_load, write_outputs
from bench.load_report import ProcessGroup, this_process
from tests.conftest import Stack, wait_ready


def test_the_load_harness_reports_every_message_acked_stored_once_and_seen(
    stack: Stack, database_url: str, tmp_path: Path
) -> None:
    tenant = stack.bootstrap("load-a", "load-b")
    options = Options(visitors=10, agents=2, rates=[10.0, 20.0], seconds=3.0, reply_rate=3.0, churn=6.0)
    # A web process of its own without the per-address limits, as the benchmark runs: every client is 127.0.0.1,
    # and the rest of the suite spends that address's budget of new sessions.
    with stack.another_web(**UNLIMITED) as base_url:
        port = base_url.rsplit(":", 1)[1]
        groups = [
            ProcessGroup("web", stack.processes[f"web-{port}"].pid),
            ProcessGroup("worker", stack.processes["worker"].pid),
        ]
        target = RunningStack(base_url, database_url, stack.env["NATS_URL"], tenant, groups + [this_process()])
        wait_ready(base_url)
        figures = asyncio.run(run_load(target, options))

    assert figures["storm"]["failed"] == 0
    errors = [step["errors"] for step in figures["steps"]] + [figures["drain_errors"]]
    assert figures["unacked"] == 0 and figures["replies_unanswered"] == 0, errors
    stored = figures["stored"]
    assert stored["visitor_messages_sent"] > 0 and stored["agent_replies_sent"] > 0
    assert stored["visitor_messages_stored"] == stored["visitor_messages_distinct"] == stored["visitor_messages_sent"]
    assert stored["agent_replies_stored"] == stored["agent_replies_sent"]
    for step in figures["steps"]:
        assert step["errors"] == {}, step["errors"]
        assert step["sent"] == step["acked"] > 0
        assert step["seen_samples"] > 0 and step["replies_not_seen"] == 0
        assert step["ack_ms"]["p50"] is not None and step["ack_ms"]["p50"] <= step["ack_ms"]["p99.9"]
        assert set(step["usage"]) >= {"web", "worker", "load clients"}
        assert step["lag"] >= 0
    json_path, svg_path = write_outputs(figures, tmp_path, "harness")
    assert json.loads(json_path.read_text())["steps"][0]["offered_per_s"] == 10.0
    assert svg_path.read_text().startswith("<svg") and "p99.9" in svg_path.read_text()
