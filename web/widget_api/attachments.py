"""Attachments over HTTP (docs/protocol.md, "Attachments"): a visitor uploads a file, then sends its URL in a
normal message; the file is served to that visitor and to the tenant's agents, to no one else.
"""

from __future__ import annotations

import uuid

from flask import Response, current_app, request, send_file
from flask.typing import ResponseReturnValue
from flask_login import current_user

from desk import attachments, tokens
from desk.db import system_session, tenant_session
from desk.models import Attachment, Site
from desk.settings import Settings
from web.widget_api import _error, bp

# Room for the multipart framing around the file itself.
_MULTIPART_OVERHEAD = 64 * 1024


def _config() -> Settings:
    return current_app.config["DESKBELL"]


def _claims() -> tokens.VisitorClaims | None:
    config = _config()
    token = request.args.get("token", "")
    return tokens.verify(config.secret_key, token, config.limits.visitor_token_days * 86400) if token else None


def attachment_url(attachment: Attachment) -> str:
    config = _config()
    base = config.public_url or request.host_url.rstrip("/")
    return f"{base}/attachments/{attachment.id}/{attachment.filename}"


@bp.before_request
def _upload_body_limit() -> None:
    """This route alone takes bodies above the app's MAX_CONTENT_LENGTH: up to the upload limit."""
    if request.endpoint == "widget_api.upload_attachment":
        request.max_content_length = _config().limits.upload_bytes + _MULTIPART_OVERHEAD


@bp.post("/api/v1/widget/attachments")
def upload_attachment() -> ResponseReturnValue:
    config = _config()
    limits = config.limits
    claims = _claims()
    if claims is None:
        return _error(401, "invalid_token", "a valid visitor token is required")
    with system_session() as session:
        site = session.get(Site, claims.site_id)
    if site is None:
        return _error(401, "invalid_token", "a valid visitor token is required")
    if not site.allows_origin(request.headers.get("Origin")):
        return _error(403, "origin_not_allowed", "this page's origin is not allowed for the site")
    upload = request.files.get("file")
    if upload is None:
        return _error(400, "missing_file", "send the file in the multipart field `file`")
    data = upload.stream.read(limits.upload_bytes + 1)
    try:
        with tenant_session(claims.tenant_id) as session:
            attachment = attachments.do_store_attachment(
                session,
                config.data_dir,
                tenant_id=claims.tenant_id,
                visitor_id=claims.visitor_id,
                name=upload.filename or "",
                data=data,
                max_bytes=limits.upload_bytes,
                allowed_types=limits.upload_types,
                per_hour=limits.uploads_per_hour,
            )
            body = {
                "id": str(attachment.id),
                "url": attachment_url(attachment),
                "filename": attachment.filename,
                "content_type": attachment.content_type,
                "size": attachment.size,
            }
    except attachments.Refused as refused:
        response = _error(refused.status, refused.code, refused.message)
        if refused.status == 415:
            response.headers["Accept"] = ", ".join(limits.upload_types)
        return response
    return body, 201


@bp.get("/attachments/<uuid:attachment_id>/<filename>")
def download_attachment(attachment_id: uuid.UUID, filename: str) -> ResponseReturnValue:
    """To the visitor who uploaded it (their token in the query) or a logged-in agent of the tenant; else 404."""
    with system_session() as session:
        attachment = session.get(Attachment, attachment_id)
    if attachment is None or attachment.filename != filename:
        return _error(404, "not_found", "no such attachment")
    claims = _claims()
    visitor = claims is not None and claims.visitor_id == attachment.visitor_id
    agent = current_user.is_authenticated and current_user.tenant_id == attachment.tenant_id
    if not (visitor or agent):
        return _error(404, "not_found", "no such attachment")
    path = attachments.path_for(_config().data_dir, attachment.tenant_id, attachment.id)
    if not path.is_file():  # another machine's disk, or lost (docs/operations.md, the data folder)
        return _error(404, "not_found", "no such attachment")
    inline = attachment.content_type in attachments.IMAGE_TYPES
    response: Response = send_file(
        path,
        mimetype=attachment.content_type,
        as_attachment=not inline,
        download_name=attachment.filename,
        max_age=0,
        etag=attachment.sha256,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    if inline:
        response.headers["Content-Disposition"] = f'inline; filename="{attachment.filename}"'
    return response
