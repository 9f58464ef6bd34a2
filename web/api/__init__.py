"""The server-to-server API under /api/v1/ (docs/api.md): a tenant's own servers read conversations, post agent or
bot messages and keep visitors' contact details, with requests signed by one of the tenant's API keys.

- auth.py           checking a signature, the nonce store, refusals, the audit entry of every call
- conversations.py  conversations, their messages, posting a message
- visitors.py       a visitor's contact details and attributes

No cookie and no CSRF token: every request is signed (web/__init__.py exempts the blueprint from CSRF). Every
answer is JSON, errors included: {"error": code, "message": text}.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from werkzeug.exceptions import HTTPException

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def error(status: int, code: str, message: str) -> Response:
    response = jsonify(error=code, message=message)
    response.status_code = status
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    """An abort() or a body over the size limit in a view: JSON like every other answer of the API."""
    code = (exc.name or "error").lower().replace(" ", "_")
    return error(exc.code or 500, code, exc.description or exc.name or "error")


from web.api import auth, conversations, visitors  # noqa: E402,F401  (checks and routes)
