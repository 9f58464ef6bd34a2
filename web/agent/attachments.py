"""Agents attach files to a conversation (docs/widget.md, "Attachments"): the composer's paperclip
(web/static/agent_attach.js) uploads here, then puts the returned URL in the reply, as visitors do.

The file is stored as the conversation's visitor's, with the visitors' size limit and type allow-list, so that
visitor (by their token) and the tenant's agents can fetch it, and no one else (web/widget_api/attachments.py).
"""

from __future__ import annotations

import uuid

from flask import current_app, jsonify, request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from desk import attachments
from desk.db import tenant_session
from desk.models import Conversation
from desk.settings import Limits
from web import csrf
from web.agent import bp
from web.widget_api.attachments import attachment_url

# What the picker says of each allowed type, in the order of the allow-list.
TYPE_NAMES = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WebP",
    "application/pdf": "PDF",
    "text/plain": "plain text",
}


def _limits() -> Limits:
    return current_app.config["DESKBELL"].limits


def readable(size: int) -> str:
    """A size as the picker says it: 10485760 -> "10 MB", 65536 -> "64 KB", 1000 -> "1000 bytes"."""
    if size >= 1048576:
        return f"{size / 1048576:.3g} MB"
    return f"{size / 1024:.3g} KB" if size >= 1024 else f"{size} bytes"


def allowed(types: tuple[str, ...]) -> str:
    return ", ".join(TYPE_NAMES.get(t, t) for t in types)


def _refused(status: int, code: str, message: str) -> ResponseReturnValue:
    return jsonify(error=code, message=message), status


@bp.post("/console/c/<uuid:conversation_id>/attachments")
@csrf.exempt  # checked below, once the body limit is raised: the global check would read the form first
def upload_attachment(conversation_id: uuid.UUID) -> ResponseReturnValue:
    """Store one file (multipart field `file`) for this conversation; 201 with its URL, else a JSON error."""
    limits = _limits()
    request.max_content_length = limits.upload_bytes + attachments.MULTIPART_OVERHEAD
    too_large = f"The file is larger than {readable(limits.upload_bytes)}."
    try:
        upload = request.files.get("file")
    except RequestEntityTooLarge:
        return _refused(413, "too_large", too_large)
    csrf.protect()  # the X-CSRFToken header from the page's hx-headers, or a csrf_token field
    if upload is None:
        return _refused(400, "missing_file", "Send the file in the multipart field `file`.")
    data = upload.stream.read(limits.upload_bytes + 1)
    with tenant_session(current_user.tenant_id) as session:
        conversation = session.get(Conversation, conversation_id)
        if conversation is None:
            return _refused(404, "not_found", "No such conversation.")
        try:
            attachment = attachments.do_store_attachment(
                session,
                current_app.config["DESKBELL"].data_dir,
                tenant_id=current_user.tenant_id,
                visitor_id=conversation.visitor_id,
                name=upload.filename or "",
                data=data,
                max_bytes=limits.upload_bytes,
                allowed_types=limits.upload_types,
                per_hour=None,  # agents are not rate-limited; the size and type limits hold
            )
        except attachments.Refused as refused:
            if refused.status == 413:
                return _refused(413, refused.code, too_large)
            if refused.status == 415:
                message = f"This file type is not allowed. Allowed: {allowed(limits.upload_types)}."
                return _refused(415, refused.code, message)
            return _refused(refused.status, refused.code, refused.message)
        body = {
            "id": str(attachment.id),
            "url": attachment_url(attachment),
            "filename": attachment.filename,
            "content_type": attachment.content_type,
            "size": attachment.size,
        }
    return body, 201
