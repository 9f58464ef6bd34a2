"""Signatures of the server-to-server API (docs/api.md): one canonical string, signed with HMAC-SHA256.

The same functions sign a request (clients, tests, the examples in docs/api.md) and check one (web/api/). A
request carries four headers: the key's prefix, a Unix timestamp, a fresh nonce, and the hex HMAC-SHA256, keyed
with the key's secret, of

    METHOD \\n PATH[?QUERY] \\n TIMESTAMP \\n NONCE \\n hex(SHA-256(body))

PATH and QUERY are as sent on the request line (this API's paths are plain ASCII); the body is hashed as bytes,
so an empty body hashes to e3b0c442... Nothing here touches the database or Flask.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

KEY_HEADER = "X-Deskbell-Key"
TIMESTAMP_HEADER = "X-Deskbell-Timestamp"
NONCE_HEADER = "X-Deskbell-Nonce"
SIGNATURE_HEADER = "X-Deskbell-Signature"
HEADERS = (KEY_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)

# 16 to 128 URL-safe characters: enough for 128 random bits, small enough to store every one for a while.
NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
TIMESTAMP = re.compile(r"[0-9]{1,12}")


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What is signed: the request's method, path with query, timestamp, nonce and the SHA-256 of its body."""
    return "\n".join((method.upper(), path, timestamp, nonce, body_hash(body))).encode()


def signature(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    return hmac.new(secret.encode(), canonical(method, path, timestamp, nonce, body), hashlib.sha256).hexdigest()


def matches(expected: str, presented: str) -> bool:
    """Constant-time, so the time a refusal takes says nothing about how much of a guess was right."""
    return hmac.compare_digest(expected.encode(), presented.encode())


def sign(
    api_key: str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that sign one request with `api_key` (the full `PREFIX.SECRET` the admin page showed)."""
    prefix, _, secret = api_key.partition(".")
    if not secret:
        raise ValueError("an API key is PREFIX.SECRET, as the admin page showed it")
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_urlsafe(18)
    return {
        KEY_HEADER: prefix,
        TIMESTAMP_HEADER: stamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature(secret, method, path, stamp, nonce, body),
    }
