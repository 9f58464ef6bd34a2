"""The session request and the socket read what may change on every connection (issue 10 made each a single
transaction; the web process remembers only which tenant a site key belongs to, which never changes): a tenant
suspended, a site's origins changed or a tenant deleted after its widget was used apply to the very next connection.
"""

from __future__ import annotations

import asyncio

import websockets

from desk.actions.platform import do_delete_tenant
from desk.actions.sites import do_update_site
from desk.audit import Client
from desk.db import system_session, tenant_session
from desk.models import Site, User
from tests.admin.conftest import logged_in, saas_url  # noqa: F401 - saas_url is a fixture
from tests.clients import Visitor, session
from tests.conftest import Stack
from tests.factories import new_people, platform_operator

HERE = Client("127.0.0.1", "pytest")


def test_a_tenant_suspended_after_its_widget_was_used_is_refused_at_the_next_session_and_socket(
    stack: Stack, saas_url: str  # noqa: F811 - the fixture
) -> None:
    people = new_people()
    site_key = str(people["site_key"])
    token = session(saas_url, site_key).json()["visitor_token"]
    operator = logged_in(saas_url, platform_operator())
    assert operator.post(f"/platform/tenants/{people['tenant_id']}/suspend").status_code == 303

    refused = session(saas_url, site_key, token)
    assert refused.status_code == 403 and refused.json()["error"] == "tenant_suspended"

    async def socket() -> tuple[list[str], int | None]:
        visitor = Visitor(saas_url, site_key, token=token)
        visitor.ws = await websockets.connect(saas_url.replace("http://", "ws://") + f"/ws/visitor?token={token}")
        frames: list[str] = []
        try:
            while True:
                frames.append(str(await asyncio.wait_for(visitor.ws.recv(), 20)))
        except websockets.ConnectionClosed as closed:
            return frames, closed.rcvd.code if closed.rcvd else None

    frames, code = asyncio.run(socket())
    assert code == 1013 and '"code":"unavailable"' in frames[-1]
    assert operator.post(f"/platform/tenants/{people['tenant_id']}/resume").status_code == 303
    assert session(saas_url, site_key, token).status_code == 200


def test_a_sites_new_allowed_origins_apply_to_the_next_session(stack: Stack) -> None:
    people = new_people()
    site_key = str(people["site_key"])
    assert session(stack.base_url, site_key, origin="https://evil.test").status_code == 200  # no list: any origin
    with tenant_session(people["tenant_id"]) as db:
        site = db.query(Site).one()
        owner = db.get(User, people["owner"]["id"])
        form = {"name": site.name, "allowed_origins": "https://shop.test"}
        do_update_site(db, owner, HERE, site.id, form)

    refused = session(stack.base_url, site_key, origin="https://evil.test")
    assert refused.status_code == 403 and refused.json()["error"] == "origin_not_allowed"
    assert session(stack.base_url, site_key, origin="https://shop.test").status_code == 200


def test_the_site_key_of_a_deleted_tenant_is_unknown_though_it_was_used_before(stack: Stack) -> None:
    people = new_people()
    site_key = str(people["site_key"])
    assert session(stack.base_url, site_key).status_code == 200
    with system_session() as db:  # the owner deletes it (SaaS mode), as the admin page's action does
        owner = db.get(User, people["owner"]["id"])
        do_delete_tenant(db, owner, HERE, people["tenant_id"], str(people["slug"]))

    gone = session(stack.base_url, site_key)
    assert gone.status_code == 404 and gone.json()["error"] == "unknown_site"
