"""Attachments (docs/protocol.md, "Attachments"): a visitor uploads a file over HTTP and sends its URL in a message;
the file is served to that visitor and the tenant's agents only, as a download unless it is an image by content."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import httpx

from tests.clients import logged_in_agent, session
from tests.conftest import Stack

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
HTML = b"<!doctype html><script>alert(document.cookie)</script>"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'


def tiny_png() -> bytes:
    """A valid 1x1 red PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def visitor_token(base_url: str, tenant: dict[str, Any]) -> str:
    response = session(base_url, str(tenant["site_key"]))
    response.raise_for_status()
    return response.json()["visitor_token"]


def upload(base_url: str, token: str, name: str, data: bytes, content_type: str = "image/png") -> httpx.Response:
    return httpx.post(
        f"{base_url}/api/v1/widget/attachments",
        params={"token": token},
        files={"file": (name, data, content_type)},
        timeout=10,
    )


def test_a_visitor_uploads_an_image_and_a_pdf_and_gets_their_urls(stack: Stack) -> None:
    tenant = stack.bootstrap("ana")
    token = visitor_token(stack.base_url, tenant)

    image = upload(stack.base_url, token, "photo.png", tiny_png())
    pdf = upload(stack.base_url, token, "Report (final).pdf", PDF, "application/pdf")

    assert image.status_code == 201, image.text
    assert pdf.status_code == 201, pdf.text
    body = pdf.json()
    assert body["filename"] == "Report_final.pdf"
    assert body["content_type"] == "application/pdf"
    assert body["size"] == len(PDF)
    assert body["url"] == f"{stack.base_url}/attachments/{body['id']}/Report_final.pdf"
    assert image.json()["content_type"] == "image/png"


def test_the_visitor_and_the_tenants_agents_can_fetch_it_and_no_one_else(stack: Stack) -> None:
    tenant, other = stack.bootstrap("bea"), stack.bootstrap("cai")
    token = visitor_token(stack.base_url, tenant)
    url = upload(stack.base_url, token, "photo.png", tiny_png()).json()["url"]

    assert httpx.get(url, params={"token": token}).content == tiny_png()
    assert logged_in_agent(stack.base_url, tenant).client.get(url).content == tiny_png()
    assert logged_in_agent(stack.base_url, other).client.get(url).status_code == 404
    assert httpx.get(url).status_code == 404
    assert httpx.get(url, params={"token": visitor_token(stack.base_url, tenant)}).status_code == 404
    assert httpx.get(url.rsplit("/", 1)[0] + "/other.png", params={"token": token}).status_code == 404


def test_files_are_downloads_unless_images_by_content_and_never_sniffed(stack: Stack) -> None:
    tenant = stack.bootstrap("dan")
    token = visitor_token(stack.base_url, tenant)
    image = httpx.get(upload(stack.base_url, token, "a.png", tiny_png()).json()["url"], params={"token": token})
    pdf = httpx.get(
        upload(stack.base_url, token, "b.pdf", PDF, "application/pdf").json()["url"], params={"token": token}
    )
    text = httpx.get(
        upload(stack.base_url, token, "c.txt", b"Hello", "text/plain").json()["url"], params={"token": token}
    )

    assert image.headers["content-type"] == "image/png"
    assert image.headers["content-disposition"].startswith("inline")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == "attachment; filename=b.pdf"
    assert text.headers["content-disposition"].startswith("attachment")
    for response in (image, pdf, text):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"


def test_html_renamed_to_png_and_svg_are_refused_by_content(stack: Stack) -> None:
    tenant = stack.bootstrap("eli")
    token = visitor_token(stack.base_url, tenant)

    html = upload(stack.base_url, token, "cute.png", HTML)
    svg = upload(stack.base_url, token, "logo.svg", SVG, "image/svg+xml")

    for response in (html, svg):
        assert response.status_code == 415
        assert response.json()["error"] == "type_not_allowed"
        assert "image/png" in response.json()["message"]


def test_a_file_over_the_size_limit_is_refused(stack: Stack) -> None:
    tenant = stack.bootstrap("fay")
    with stack.another_web(DESKBELL_UPLOAD_BYTES="1000") as base_url:
        token = visitor_token(base_url, tenant)
        assert upload(base_url, token, "ok.txt", b"a" * 1000, "text/plain").status_code == 201

        over = upload(base_url, token, "big.txt", b"a" * 1001, "text/plain")
        far_over = upload(base_url, token, "huge.txt", b"a" * 200_000, "text/plain")

    assert over.status_code == 413
    assert over.json()["error"] == "too_large"
    assert far_over.status_code == 413  # refused by the request's body limit before the form is read


def test_the_21st_upload_in_an_hour_is_refused(stack: Stack) -> None:
    tenant = stack.bootstrap("gus")
    token = visitor_token(stack.base_url, tenant)
    for n in range(20):
        assert upload(stack.base_url, token, f"{n}.txt", b"note", "text/plain").status_code == 201

    refused = upload(stack.base_url, token, "21.txt", b"note", "text/plain")

    assert refused.status_code == 429
    assert refused.json()["error"] == "too_many_uploads"


def test_a_bad_token_is_refused(stack: Stack) -> None:
    assert upload(stack.base_url, "forged", "a.png", tiny_png()).status_code == 401
    assert httpx.post(f"{stack.base_url}/api/v1/widget/attachments", files={"file": ("a", b"x")}).status_code == 401


def test_the_console_shows_an_attachment_as_a_link_and_an_image_as_a_thumbnail(stack: Stack) -> None:
    import asyncio

    from tests.clients import Visitor

    tenant = stack.bootstrap("hal")
    agent = logged_in_agent(stack.base_url, tenant)
    visitor = Visitor(stack.base_url, str(tenant["site_key"]))

    async def scenario() -> str:
        await visitor.connect()
        assert visitor.token
        image = upload(stack.base_url, visitor.token, "photo.png", tiny_png()).json()["url"]
        body = f"📎 photo.png {image} and https://evil.test/attachments/x/<b>.png"
        await visitor.send({"type": "message", "client_id": "c1", "body": body})
        conversation_id = (await visitor.expect("ack"))["conversation_id"]
        await visitor.close()
        return conversation_id

    conversation_id = asyncio.run(scenario())
    page = agent.conversation_page(conversation_id)

    assert '<a class="attachment" href="http://127.0.0.1:' in page
    assert ">photo.png</a>" in page
    assert '<img class="thumb" src="http://127.0.0.1:' in page
    assert "https://evil.test/attachments/x/&lt;b&gt;.png" in page
    assert 'src="https://evil.test' not in page
