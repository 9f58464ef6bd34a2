"""Front-end libraries served from node_modules, as pinned by package-lock.json: no CDN, no copied files."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, send_from_directory
from flask.typing import ResponseReturnValue

bp = Blueprint("vendor", __name__)

# The only files the pages load from node_modules.
FILES = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "sse.js": "htmx-ext-sse/dist/sse.min.js",
}


@bp.get("/vendor/<name>")
def asset(name: str) -> ResponseReturnValue:
    if name not in FILES:
        abort(404)
    return send_from_directory(current_app.config["NODE_MODULES"], FILES[name], max_age=3600)
