"""Issue 7, XSS: a corpus of payloads (xss_payloads.txt: script tags, event handlers, javascript: URLs, SVG, CSS,
mutation XSS, polyglots, template injection) goes in through every door a visitor or an admin has, and is then
rendered in real headless Chromium wherever someone looks at it: nothing runs, and the text is shown as text.

Doors: visitor messages (socket), visitor names and emails (identify, the email field), custom attributes, page
titles and URLs (session page views), attachment file names, agent replies, canned responses, team and site
names, the widget's welcome text and label names (admin). Views: the console's inbox, conversation pane, visitor
panel, search and canned pages; the admin's teams, sites, labels and audit pages; the widget on a host page.

What "runs" means, recorded from before any page script: alert/confirm/prompt/print and console.* calls
(overridden by an init script), dialogs, page errors, Content-Security-Policy violations (markup that got into
the page though the CSP stopped it), any request to the canary host, and elements with event-handler
attributes. Payloads are batched: a few conversations hold them all, so each view is one page load.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import websockets
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from desk.actions.admin import Conflict
from desk.actions.canned import do_create_canned
from desk.actions.teams import do_create_team
from desk.audit import Client
from desk.db import tenant_session
from desk.models import User
from tests.admin.conftest import logged_in
from tests.clients import Agent, Visitor
from tests.conftest import Stack
from tests.e2e.conftest import browser  # noqa: F401 - the fixture

# The corpus takes a minute or two to say on a busy two-core machine; the views, another minute.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

PAYLOADS = [
    line
    for line in (Path(__file__).parent / "xss_payloads.txt").read_text(encoding="utf-8").splitlines()
    if line and not line.startswith("# ")
]
CANARY = "canary.deskbell.test"
REPLY_CHUNK = 15  # payloads to an agent's reply, a line each
VISIT_CHUNK = 5  # payloads to a page title and URL
ATTACH_EVERY = 3  # every third identified visitor attaches a file named with their payload
CHUNK = 50  # attributes and the pages-visited trail keep 50 each: one visitor per 50 payloads

# Runs in every frame before the page's own scripts: anything a payload could call to show itself is recorded.
HOOKS = """
(() => {
  const hit = (kind, args) => { try { window.__xssHit(kind, String(args)); } catch (e) { /* not exposed here */ } };
  for (const name of ["alert", "confirm", "prompt", "print"]) {
    window[name] = (...args) => { hit(name, args.join(" ")); return null; };
  }
  for (const name of ["log", "info", "warn", "error", "debug", "trace", "dir", "table"]) {
    console[name] = (...args) => hit("console." + name, args.map(String).join(" "));
  }
  document.addEventListener("securitypolicyviolation",
    (e) => hit("csp", e.violatedDirective + " " + e.blockedURI + " " + (e.sample || "")));
})();
"""
# Elements that carry script or load something on their own: none may come from a payload.
INJECTED = """(root) => {
  const URL_ATTRIBUTES = ["href", "xlink:href", "src", "action", "formaction", "data", "poster", "background"];
  const scope = root ? (document.querySelector(root)?.shadowRoot || document) : document;
  const all = Array.from(scope.querySelectorAll("*"));
  return all.filter((el) =>
    Array.from(el.attributes).some((a) => /^on/i.test(a.name)
      || (URL_ATTRIBUTES.includes(a.name.toLowerCase()) && /^\\s*(javascript|data|vbscript):/i.test(a.value))
      || a.name === "srcdoc" || a.name === "formaction" || /^hx-on/i.test(a.name))
    || ["IFRAME", "OBJECT", "EMBED", "BASE", "FRAME", "MARQUEE", "XMP", "NOSCRIPT"].includes(el.tagName)
    || (el.tagName === "SCRIPT" && !el.src)
    || (el.tagName === "META" && el.httpEquiv)
  ).map((el) => el.outerHTML.slice(0, 200));
}"""


def squash(text: str) -> str:
    return " ".join(text.split())


def email_of(payload: str) -> str:
    """A payload made into something the session's email field takes: no spaces, no other @."""
    local = re.sub(r"[\s@]", "", payload)[:300] or "x"
    return f"{local}@{CANARY}"


@dataclass
class World:
    base_url: str
    site_key: str
    agent_login: dict[str, str]
    owner_login: dict[str, str]
    chatters: list[dict[str, Any]] = field(default_factory=list)  # {"conversation", "token", "payloads"}
    named: list[dict[str, Any]] = field(default_factory=list)  # {"conversation", "name", "email", "file"}
    site_name: str = ""
    welcome: str = ""


def identity_secret(database_url: str, site_key: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT identity_secret FROM sites WHERE site_key = %s", (site_key,)).fetchone()
    assert row is not None
    return row[0]


async def session_of(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/api/v1/widget/session", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def say(base_url: str, site_key: str, token: str, bodies: list[str]) -> str:
    """The visitor of `token` sends each body over a real socket, in order; returns the conversation."""
    visitor = Visitor(base_url, site_key, token=token)
    # The session was just made (or resumed): open its socket as the widget does, without asking for another.
    visitor.ws = await websockets.connect(base_url.replace("http://", "ws://") + f"/ws/visitor?token={token}")
    await visitor.send({"type": "hello", "last_seq": 0})
    await visitor.expect("welcome")
    for i, body in enumerate(bodies):  # all at once, as a widget flushing its outbox does; acks come in order
        await visitor.send({"type": "message", "client_id": f"xss-{i}", "body": body})
    acks = [await visitor.expect("ack", timeout=60) for _ in bodies]
    await visitor.close()
    return acks[-1]["conversation_id"]


async def chatter(world: World, client: httpx.AsyncClient, payloads: list[str]) -> None:
    """An anonymous visitor who leaves an email, sets every payload as an attribute, visits a page titled with
    each, and sends each as a message."""
    page = {"url": "https://shop.test/", "title": "Shop"}
    first = await session_of(
        client,
        {
            "site_key": world.site_key,
            "email": email_of(payloads[0]),
            "attributes": {f"a{i:03d}": p for i, p in enumerate(payloads)} | {payloads[1][:64]: payloads[1]},
            "page": page,
        },
    )
    token = first["visitor_token"]
    for i in range(0, len(payloads), VISIT_CHUNK):
        some = payloads[i : i + VISIT_CHUNK]
        url = "https://shop.test/p?" + "&".join(f"q={p}" for p in some) + f"&utm_source={some[0]}"
        visit = {"url": url, "title": " ¦ ".join(some)[:500], "referrer": f"https://{CANARY}/{some[-1]}"}
        token = (await session_of(client, {"site_key": world.site_key, "visitor_token": token, "page": visit}))[
            "visitor_token"
        ]
    conversation = await say(world.base_url, world.site_key, token, payloads)
    world.chatters.append({"conversation": conversation, "token": token, "payloads": payloads})


async def named_visitor(world: World, client: httpx.AsyncClient, secret: str, i: int, payload: str) -> None:
    """An identified visitor whose name and email are the payload, who attaches a file named with it."""
    external_id = f"user-{i}"
    identity = {
        "external_id": external_id,
        "name": payload[:200],
        "email": email_of(payload),
        "hash": hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).hexdigest(),
    }
    made = await session_of(client, {"site_key": world.site_key, "identity": identity})
    assert made["identified"], made
    token = made["visitor_token"]
    attachment = None
    if i % ATTACH_EVERY == 0:
        upload = await client.post(
            "/api/v1/widget/attachments",
            params={"token": token},
            files={"file": (f"{payload}.txt", b"a plain text file\n", "text/plain")},
        )
        assert upload.status_code == 201, upload.text
        attachment = upload.json()
    body = f"{payload} {attachment['url']}" if attachment else payload
    conversation = await say(world.base_url, world.site_key, token, [body])
    world.named.append(
        {"conversation": conversation, "name": payload[:200], "email": email_of(payload), "file": attachment}
    )


async def visitors_say_everything(world: World, secret: str) -> None:
    # Idle connections are dropped before Hypercorn's 5 s keep-alive ends them under a request on its way.
    limits = httpx.Limits(keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=world.base_url, timeout=30, limits=limits) as client:
        chunks = [PAYLOADS[i : i + CHUNK] for i in range(0, len(PAYLOADS), CHUNK)]
        await asyncio.gather(*(chatter(world, client, chunk) for chunk in chunks))
        # 20 at a time: a browser's worth of parallel requests, not a flood (that is the abuse tests' business).
        gate = asyncio.Semaphore(20)

        async def one(i: int, payload: str) -> None:
            async with gate:
                await named_visitor(world, client, secret, i, payload)

        await asyncio.gather(*(one(i, p) for i, p in enumerate(PAYLOADS)))


def agents_and_admins_say_everything(world: World, database_url: str) -> None:
    """The agent replies with every payload (the widget shows them) and saves each as a canned response; the owner
    names teams, the site and the widget's welcome with them. Replies and the site go over HTTP; the canned
    responses and teams, a few hundred rows, by the same actions their forms call (HTTP adds only the form)."""
    agent = Agent(world.base_url)
    assert agent.login(world.agent_login["email"], world.agent_login["password"]).status_code == 200
    conversation = world.chatters[0]["conversation"]
    token = agent.csrf(agent.conversation_page(conversation))
    for i in range(0, len(PAYLOADS), REPLY_CHUNK):
        sent = agent.client.post(
            f"/console/c/{conversation}/messages",
            data={"body": "\n".join(PAYLOADS[i : i + REPLY_CHUNK]), "client_id": f"reply-{i}", "csrf_token": token},
        )
        assert sent.status_code == 200, sent.text[:300]

    with psycopg.connect(database_url) as conn:
        tenant_id, agent_id, owner_id = conn.execute(
            "SELECT a.tenant_id, a.id, o.id FROM users a JOIN users o ON o.tenant_id = a.tenant_id"
            " WHERE a.email = %s AND o.email = %s",
            (world.agent_login["email"], world.owner_login["email"]),
        ).fetchone()
    with tenant_session(tenant_id) as session:
        for i, payload in enumerate(PAYLOADS):
            do_create_canned(session, agent_id, f"x{i:03d}", payload)
        owner = session.get(User, owner_id)
        for payload in PAYLOADS:
            with contextlib.suppress(Conflict):  # two payloads may share their first 100 characters
                do_create_team(session, owner, Client("127.0.0.1", "pytest"), payload[:100])
                session.commit()

    owner_browser = logged_in(world.base_url, world.owner_login)
    sites = owner_browser.get("/admin/sites").text
    site_id = re.search(r"/admin/sites/([0-9a-f-]{36})", sites).group(1)
    world.site_name, world.welcome = PAYLOADS[0], PAYLOADS[16]
    saved = owner_browser.post(
        f"/admin/sites/{site_id}", {"name": world.site_name, "allowed_origins": "", "welcome_en": world.welcome}
    )
    assert saved.status_code < 400, saved.text[:300]


@pytest.fixture(scope="module")
def world(stack: Stack) -> Iterator[World]:
    """Everything said, on a web process of its own whose per-address limits are off: the corpus makes a few
    hundred visitors from one address, and the shared web process's counters must stay for the other tests."""
    with stack.another_web(
        DESKBELL_SESSIONS_PER_IP_PER_HOUR="0",
        DESKBELL_CONNECTIONS_PER_IP_PER_MINUTE="0",
        DESKBELL_SOCKETS_PER_IP="0",
    ) as base_url:
        made = stack.bootstrap("xena")
        owner = {"email": str(made["owner_email"]), "password": str(made["owner_password"])}
        world = World(base_url, str(made["site_key"]), made["agents"][0], owner)
        secret = identity_secret(stack.env["DATABASE_URL"], world.site_key)
        # Its own thread: Playwright's sync API may already run an event loop on this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, visitors_say_everything(world, secret)).result()
        world.chatters.sort(key=lambda c: PAYLOADS.index(c["payloads"][0]))
        agents_and_admins_say_everything(world, stack.env["DATABASE_URL"])
        yield world


# -- the watch -----------------------------------------------------------------------------------------------------


@dataclass
class Watch:
    """Everything that would mean a payload ran, for one browser context."""

    hits: list[str] = field(default_factory=list)

    def record(self, kind: str, detail: str) -> None:
        self.hits.append(f"{kind}: {detail[:300]}")


def watched(chromium: Browser, **options: Any) -> tuple[BrowserContext, Watch]:
    context = chromium.new_context(**options)
    watch = Watch()
    context.expose_function("__xssHit", watch.record)
    context.add_init_script(HOOKS)

    def canary(route: Route) -> None:
        watch.record("canary request", route.request.url)
        route.abort()

    context.route(re.compile(rf"^[a-z]+://{re.escape(CANARY)}"), canary)
    context.on("page", lambda page: watch_page(page, watch))
    return context, watch


def watch_page(page: Page, watch: Watch) -> None:
    def dialog(d: Any) -> None:
        watch.record("dialog", f"{d.type} {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    page.on("pageerror", lambda error: watch.record("page error", str(error)))
    # The browser's own console lines count too, but for a refused request's status (a refusal is no execution).
    page.on(
        "console",
        lambda m: None if m.text.startswith("Failed to load resource") else watch.record("console", m.text),
    )


def settle(page: Page) -> None:
    """Let late loads, timers and autofocus handlers have their go before judging (not a timed assertion)."""
    page.wait_for_load_state("load")  # not "networkidle": the console's live stream stays open
    page.wait_for_timeout(500)


def nothing_ran(page: Page, watch: Watch, where: str, root: str | None = None) -> None:
    settle(page)
    injected = page.evaluate(INJECTED, root)
    assert injected == [], f"{where}: elements a payload made: {injected[:5]}"
    assert watch.hits == [], f"{where}: {watch.hits[:10]}"


def shown_as_text(text: str, payloads: list[str], where: str) -> None:
    seen = squash(text)
    missing = [p for p in payloads if squash(p) not in seen]
    assert missing == [], f"{where}: not shown as text: {missing[:5]}"


def text_and_values(page: Page, scope: str = "main") -> str:
    """What a user reads there: the text, and what the form fields hold (an editable name is an input's value)."""
    fields = page.locator(f"{scope} input:not([type=hidden]), {scope} textarea")
    values = fields.evaluate_all("(fields) => fields.map((field) => field.value)")
    return page.locator(scope).inner_text() + " " + " ".join(values)


def log_in(page: Page, base_url: str, login: dict[str, str], lands: str) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill(login["email"])
    page.get_by_label("Password").fill(login["password"])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}{lands}", wait_until="load")


# -- the tests -----------------------------------------------------------------------------------------------------


def test_the_corpus_has_at_least_100_distinct_payloads() -> None:
    assert len(set(PAYLOADS)) == len(PAYLOADS) >= 100


def test_the_console_shows_every_payload_as_text_and_runs_none(world: World, browser: Browser) -> None:  # noqa: F811
    context, watch = watched(browser, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    log_in(page, world.base_url, world.agent_login, "/console")

    # The inbox as the console opens it, then every further page of the list as "More conversations" fetches it
    # (the fragment alone: the console's live refresh would put the first page back under our feet).
    page.goto(f"{world.base_url}/console?view=all")
    expect(page.locator("#conversation-list .row").first).to_be_visible()
    nothing_ran(page, watch, "inbox")
    names = page.locator("#conversation-list .row .name").all_inner_texts()
    more = page.locator("#conversation-list li.more a").get_attribute("hx-get")
    for _ in range(10):
        if not more:
            break
        page.goto(world.base_url + more)
        names += page.locator(".row .name").all_inner_texts()
        nothing_ran(page, watch, "inbox, more")
        link = page.locator("li.more a")
        more = link.get_attribute("hx-get") if link.count() else None
    shown_as_text(" ".join(names), [n["name"] for n in world.named], "inbox names")

    # Each chatter's pane: the thread, and the visitor panel's email, attributes and pages visited.
    for chatter in world.chatters:
        page.goto(f"{world.base_url}/console/c/{chatter['conversation']}")
        thread = page.locator(".pane.active .thread")
        expect(thread).to_contain_text(chatter["payloads"][-1][:20])
        shown_as_text(thread.inner_text(), chatter["payloads"], "thread")
        panel = page.locator(".pane.active .visitor-panel")
        shown_as_text(panel.locator(".attributes").inner_text(), chatter["payloads"], "attributes")
        shown_as_text(panel.locator(".trail").inner_text(), chatter["payloads"], "pages visited")
        assert squash(email_of(chatter["payloads"][0])) in squash(panel.locator(".visitor-email").inner_text())
        nothing_ran(page, watch, f"pane of {chatter['payloads'][0]!r}")

    # An identified visitor's pane: name, email and the attachment link named by the file (as it was stored).
    for named in [n for n in world.named if n["file"]][::8]:
        page.goto(f"{world.base_url}/console/c/{named['conversation']}")
        panel = page.locator(".pane.active .visitor-panel")
        expect(panel.locator(".visitor-name")).to_have_text(squash(named["name"]))
        link = page.locator(".pane.active .thread a.attachment")
        expect(link).to_have_text(named["file"]["filename"])
        assert link.get_attribute("href") == named["file"]["url"]
        nothing_ran(page, watch, f"pane of {named['name']!r}")

    # Search, for words most payloads share: the hits' snippets are text with only our <mark>s.
    for term in ("alert", "onerror", "script", "svg", "javascript", "7*7", "canary"):
        page.goto(f"{world.base_url}/console/search?q={term}")
        results = page.locator(".search-results")
        expect(results).to_be_visible()
        assert results.locator(".hit").count() > 0, f"search for {term!r} found nothing"
        assert results.locator("mark").count() == results.locator("mark").filter(has_text=re.compile(".")).count()
        nothing_ran(page, watch, f"search {term!r}")

    # The canned responses, on their page and in the composer's lookup.
    page.goto(f"{world.base_url}/console/canned")
    shown_as_text(text_and_values(page), PAYLOADS, "canned responses")
    nothing_ran(page, watch, "canned page")
    page.goto(f"{world.base_url}/console/c/{world.chatters[0]['conversation']}")
    box = page.get_by_role("textbox", name="Reply")
    box.click()
    box.press_sequentially("/x0")
    menu = page.locator(".canned-menu")
    expect(menu).to_be_visible()
    previews = [p if len(p) <= 90 else p[:90] for p in PAYLOADS[:10]]
    shown_as_text(menu.inner_text(), previews, "canned lookup")
    nothing_ran(page, watch, "canned lookup")
    context.close()


def test_the_admin_panel_shows_every_payload_as_text_and_runs_none(world: World, browser: Browser) -> None:  # noqa: F811
    context, watch = watched(browser, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    log_in(page, world.base_url, world.owner_login, "/console")

    page.goto(f"{world.base_url}/admin/teams")
    shown_as_text(text_and_values(page), [p[:100].strip() for p in PAYLOADS], "teams")
    nothing_ran(page, watch, "teams")
    page.goto(f"{world.base_url}/admin/sites")
    shown_as_text(text_and_values(page), [world.site_name], "sites")
    nothing_ran(page, watch, "sites")
    page.goto(f"{world.base_url}/admin/agents")
    nothing_ran(page, watch, "agents")
    page.goto(f"{world.base_url}/admin/audit")
    nothing_ran(page, watch, "audit log")

    # Label names are letters, digits, spaces, _ and -: a payload is refused, and the refusal shows it as text.
    for payload in PAYLOADS[::10]:
        page.goto(f"{world.base_url}/admin/labels")
        form = page.locator("form", has=page.get_by_role("button", name=re.compile("Add|Create", re.I))).first
        form.get_by_label(re.compile("Name", re.I)).fill(payload)
        form.get_by_role("button", name=re.compile("Add|Create", re.I)).click()
        page.wait_for_load_state("load")
        expect(page.get_by_role("alert").first).to_be_visible()
        nothing_ran(page, watch, f"label {payload!r}")
    context.close()


def test_the_widget_shows_every_payload_as_text_and_runs_none(
    stack: Stack,
    world: World,
    browser: Browser,  # noqa: F811
) -> None:
    """The first chatter comes back to a shop page with no CSP of its own: its thread (its own messages and the
    agent's replies, all payloads), the site's name and welcome text are the payloads."""
    port = world.base_url.rsplit(":", 1)[1]
    shop = f"http://localhost:{port}/shop"
    context, watch = watched(browser, permissions=["local-network-access"])
    chatter = world.chatters[0]
    key, value = json.dumps(f"deskbell:{world.site_key}:token"), json.dumps(json.dumps(chatter["token"]))
    # Only on the shop's own page (the init script runs in every frame, and some may not touch storage).
    remember = f"if (location.href.startsWith({json.dumps(shop)})) localStorage.setItem({key}, {value});"
    context.add_init_script(remember)
    host = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Shop</title></head><body><p>Our shop</p>"
        f"<script src='{world.base_url}/widget.js' data-site='{world.site_key}' async></script></body></html>"
    )
    context.route(shop, lambda route: route.fulfill(status=200, content_type="text/html", body=host))
    page = context.new_page()
    page.goto(shop)
    page.get_by_role("button", name="Open chat").click()
    panel = page.get_by_role("dialog")
    expect(panel).to_be_visible()
    replies = -(-len(PAYLOADS) // REPLY_CHUNK)
    expect(page.locator(".m.visitor")).to_have_count(len(chatter["payloads"]), timeout=30_000)
    expect(page.locator(".m.agent")).to_have_count(replies, timeout=30_000)
    shown_as_text(" ".join(page.locator(".m.visitor .b").all_inner_texts()), chatter["payloads"], "widget: visitor")
    shown_as_text(" ".join(page.locator(".m.agent .b").all_inner_texts()), PAYLOADS, "widget: agent")
    shown_as_text(panel.inner_text(), [world.site_name, world.welcome], "widget: site name and welcome")
    nothing_ran(page, watch, "widget", root="deskbell-widget")

    # The alarm works: the same payloads put into the host page's own DOM (no CSP there) are caught, each way.
    page.evaluate(
        "([html]) => { const d = document.createElement('div'); d.innerHTML = html; document.body.append(d); }",
        [
            f"<img src=x onerror=alert(1)><img src=y onerror=console.log('xss')><img src=http://{CANARY}/pixel.png>"
        ],  # fmt: skip
    )
    settle(page)
    caught = " ".join(watch.hits)
    assert "alert: 1" in caught and "console.log: xss" in caught and f"canary request: http://{CANARY}" in caught
    context.close()
