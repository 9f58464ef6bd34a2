"""Logs an operator can ship: one JSON object per line, with the request id that the response also carries."""

from __future__ import annotations

import json
import time

import httpx

from tests.conftest import Stack


def test_json_logs_carry_the_request_id_of_the_request_that_wrote_them(stack: Stack) -> None:
    with stack.another_web(LOG_FORMAT="json") as base_url:
        port = base_url.rsplit(":", 1)[1]
        response = httpx.post(
            base_url + "/login",
            data={"email": "nobody@example.test", "password": "x"},  # and no CSRF token
            headers={"X-Request-ID": "req-42"},
        )
        assert response.headers["X-Request-ID"] == "req-42"
        assert httpx.get(base_url + "/healthz").headers["X-Request-ID"]  # made up when the caller sent none
        assert stack.log_dir is not None
        log_file = stack.log_dir / f"web-{port}.log"
        deadline = time.monotonic() + 10
        while "CSRF token is missing" not in log_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        text = log_file.read_text()
        ours = [line for line in text.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in ours]
    assert records, "no JSON log lines:\n" + text
    assert all({"time", "level", "logger", "process", "message"} <= r.keys() for r in records)
    # The login form was posted without its CSRF token: refused, and logged under the caller's request id.
    [refused] = [r for r in records if r["message"] == "The CSRF token is missing."]
    assert (refused["request_id"], refused["process"]) == ("req-42", "web")
