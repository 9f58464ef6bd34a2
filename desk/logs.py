"""Logging for every process: one JSON object per line in production, readable lines in development.

`LOG_FORMAT=json|text` overrides the choice. Each line carries the process (web, worker...) and, when known,
the request id (web/__init__.py sets it from X-Request-ID or makes one) and the ids a call site passes with
`extra={"conversation_id": ...}`. docs/operations.md, "Logs".
"""

from __future__ import annotations

import logging
import os
import uuid
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
TEXT_FORMAT = "%(asctime)s %(process_name)s %(name)s %(levelname)s %(message)s"


class _Context(logging.Filter):
    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def filter(self, record: logging.LogRecord) -> bool:
        record.process_name = self.process_name
        request_id = REQUEST_ID.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def request_id(given: str | None) -> str:
    """The caller's X-Request-ID when it is a sane token (a proxy's), else a new one."""
    if given and len(given) <= 64 and all(c.isalnum() or c in "-_.:" for c in given):
        return given
    return uuid.uuid4().hex


def configure(process_name: str) -> None:
    """Set up the root logger once per process (replacing any earlier set-up)."""
    production = os.environ.get("DESKBELL_ENV", "development") != "development"
    as_json = os.environ.get("LOG_FORMAT", "json" if production else "text") == "json"
    handler = logging.StreamHandler()
    handler.addFilter(_Context(process_name))
    if as_json:
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(process_name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger", "process_name": "process"},
                timestamp="time",  # ISO 8601, UTC
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
