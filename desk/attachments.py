"""Files visitors and agents attach: the type found from the bytes, the rows, the files under the data folder.

Every file belongs to one visitor: the one who uploaded it, or the visitor of the conversation an agent attached it
to; that visitor and the tenant's agents may fetch it. docs/protocol.md ("Attachments"), docs/widget.md
("Attachments") and docs/operations.md (limits, the storage folder).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import filetype
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from desk.models import Attachment

# Served inline (as <img>); everything else is served as a download.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# The extension a stored name gets, so a name's extension always matches the content.
EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "application/pdf": "pdf",
    "text/plain": "txt",
}
# Room for the multipart framing around the file: an upload request's body may be this much over the file limit.
MULTIPART_OVERHEAD = 64 * 1024
# Text that a browser could take for markup (HTML, SVG, XML) is not plain text, whatever its name says.
_MARKUP = re.compile(rb"^\s*<", re.S)


class Refused(Exception):
    """An upload the limits refuse; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def sniff(data: bytes) -> str | None:
    """The content type of `data` by its magic bytes, or None when it is none of the types we know."""
    kind = filetype.guess(data)
    if kind is not None:
        return kind.mime if kind.mime in EXTENSIONS else None
    if not data or b"\x00" in data or _MARKUP.match(data.removeprefix(b"\xef\xbb\xbf")):
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text/plain"


def safe_name(name: str, content_type: str) -> str:
    """An ASCII name for URLs and Content-Disposition, with the extension of what the bytes are."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name or "").stem).strip("._-")[:100] or "file"
    return f"{stem}.{EXTENSIONS[content_type]}"


def path_for(data_dir: Path, tenant_id: uuid.UUID, attachment_id: uuid.UUID) -> Path:
    return data_dir / "attachments" / str(tenant_id) / str(attachment_id)


def _write_atomically(path: Path, data: bytes) -> None:
    """A temporary file in the same folder, then a rename: a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def do_store_attachment(
    session: Session,
    data_dir: Path,
    *,
    tenant_id: uuid.UUID,
    visitor_id: uuid.UUID,
    name: str,
    data: bytes,
    max_bytes: int,
    allowed_types: tuple[str, ...],
    per_hour: int | None,
) -> Attachment:
    """Check the limits, write the file, then commit its row (a file without a row is never served).

    `per_hour` limits a visitor's own uploads; None (an agent's upload, for `visitor_id`'s conversation) skips it.
    """
    if len(data) > max_bytes:
        raise Refused(413, "too_large", f"the file is larger than {max_bytes} bytes")
    content_type = sniff(data)
    if content_type not in allowed_types:
        raise Refused(415, "type_not_allowed", "allowed types: " + ", ".join(allowed_types))
    if per_hour is not None:
        since = datetime.now(UTC) - timedelta(hours=1)
        recent = session.scalar(
            select(func.count()).where(Attachment.visitor_id == visitor_id, Attachment.created_at > since)
        )
        if (recent or 0) >= per_hour:
            raise Refused(429, "too_many_uploads", f"at most {per_hour} uploads an hour")
    attachment = Attachment(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        visitor_id=visitor_id,
        filename=safe_name(name, content_type),
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    _write_atomically(path_for(data_dir, tenant_id, attachment.id), data)
    session.add(attachment)
    session.commit()
    return attachment
