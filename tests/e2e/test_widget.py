"""The widget as a site embeds it (docs/widget.md): one script tag on someone else's page, in headless Chromium,
against the running stack. Host pages are served by the test on http://localhost:PORT, another origin than the
stack's http://127.0.0.1:PORT, so the widget talks to Deskbell cross-origin as it does on a customer's site.
Chromium counts a page served by `route` as public, and a public page may reach a loopback address only with the
`local-network-access` permission: a production Deskbell is public, so no visitor is asked for it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from desk.settings import ROOT
from tests.clients import Agent, logged_in_agent
from tests.conftest import Stack

pytestmark = pytest.mark.browser

WIDGET_JS = ROOT / "web" / "static" / "widget.js"
HOSTILE_CSS = (
    "* { all: unset } div { display: none !important } button { font-size: 40px !important }"
    " p { color: rgb(200, 0, 0) !important; margin: 13px !important } deskbell-widget { opacity: 0 }"
)
XSS = "<img src=x onerror=alert(1)>"
# Computed style of the host's own elements, to compare with and without the widget.
HOST_STYLES = """() => ['#host-text', '#host-button', 'body'].map(sel => {
    const style = getComputedStyle(document.querySelector(sel));
    return Array.from(style).map(name => name + ':' + style.getPropertyValue(name)).join(';');
})"""


def shop_url(stack: Stack) -> str:
    return "http://localhost:" + stack.base_url.rsplit(":", 1)[1] + "/shop"


def host_page(stack: Stack, site_key: str | None, head: str = "", before: str = "") -> str:
    snippet = f'<script src="{stack.base_url}/widget.js" data-site="{site_key}" async></script>' if site_key else ""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
        f"<title>Shop</title>{head}</head><body>"
        "<p id='host-text'>Our shop</p><button id='host-button'>Buy</button><div>Hidden by the host</div>"
        f"{before}{snippet}</body></html>"
    )


def serve(context: BrowserContext, url: str, html: str, headers: dict[str, str] | None = None) -> None:
    """The host page, served by the test (so it loads offline too)."""

    def fulfil(route: Route) -> None:
        route.fulfill(status=200, content_type="text/html", body=html, headers=headers)

    context.route(url, fulfil)


def serve_widget_offline(context: BrowserContext, stack: Stack) -> None:
    """widget.js from the working tree, as a browser cache would hand it over while offline."""
    context.route(
        f"{stack.base_url}/widget.js",
        lambda route: route.fulfill(status=200, content_type="text/javascript", body=WIDGET_JS.read_text()),
    )


def new_context(browser: Browser, **options: object) -> BrowserContext:
    return browser.new_context(permissions=["local-network-access"], **options)


def fail_on_dialogs(page: Page) -> list[str]:
    dialogs: list[str] = []

    def dismiss(dialog: object) -> None:
        dialogs.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", dismiss)
    return dialogs


def conversation_of(agent: Agent) -> str:
    return agent.client.get("/console").text.split("/console/c/")[1].split('"')[0]


def test_widget_works_on_a_hostile_page_and_leaves_its_styles_alone(
    stack: Stack, browser: Browser, artifacts: Path
) -> None:
    tenant = stack.bootstrap("ines")
    context = new_context(browser, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    head = f"<style>{HOSTILE_CSS}</style>"
    serve(context, shop_url(stack) + "?bare", host_page(stack, None, head))
    serve(context, shop_url(stack), host_page(stack, str(tenant["site_key"]), head))
    page.goto(shop_url(stack) + "?bare")
    bare = page.evaluate(HOST_STYLES)

    page.goto(shop_url(stack))
    launcher = page.get_by_role("button", name="Open chat")
    expect(launcher).to_be_visible()
    assert launcher.bounding_box()["width"] == 56, "the host's button rule reached into the widget"
    launcher.click()
    box = page.get_by_role("textbox", name="Message")
    expect(box).to_be_focused()
    expect(page.get_by_text("Hi! How can we help?")).to_be_visible()
    box.fill("Hello from a hostile page")
    box.press("Enter")
    sent = page.locator(".m.visitor", has_text="Hello from a hostile page")
    expect(sent).to_have_attribute("data-state", "sent")
    expect(sent.locator(".st")).to_have_text("Sent")
    expect(sent.locator("time")).to_have_text(re.compile(r"\d\d:\d\d"))
    assert page.get_by_role("button", name="Send").evaluate("e => getComputedStyle(e).fontSize") == "14px"

    assert page.evaluate(HOST_STYLES) == bare, "the widget changed the host page's styles"
    page.screenshot(path=str(artifacts / "widget-desktop.png"))
    context.close()


def test_widget_runs_under_a_strict_content_security_policy(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("jon")
    context = new_context(browser)
    page = context.new_page()
    csp = (
        f"default-src 'none'; script-src {stack.base_url}; connect-src {stack.base_url} {stack.ws_url};"
        " style-src 'none'; require-trusted-types-for 'script'"
    )
    serve(context, shop_url(stack), host_page(stack, str(tenant["site_key"])), {"Content-Security-Policy": csp})
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on("pageerror", lambda error: violations.append(str(error)))
    page.goto(shop_url(stack))

    page.get_by_role("button", name="Open chat").click()
    panel = page.get_by_role("dialog")
    expect(panel).to_be_visible()
    assert panel.bounding_box()["width"] == 360, "the widget's stylesheet did not apply"
    box = page.get_by_role("textbox", name="Message")
    box.fill("Hello under CSP")
    box.press("Enter")
    expect(page.locator(".m.visitor", has_text="Hello under CSP")).to_have_attribute("data-state", "sent")
    assert violations == []
    context.close()


def test_messages_typed_offline_survive_a_reload_and_arrive_once_in_order(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("kim")
    agent = logged_in_agent(stack.base_url, tenant)
    context = new_context(browser)
    page = context.new_page()
    ready = "<script>window.Deskbell = {q: [['on', 'ready', function () { window.deskbellReady = true; }]]}</script>"
    serve(context, shop_url(stack), host_page(stack, str(tenant["site_key"]), before=ready))
    serve_widget_offline(context, stack)
    page.goto(shop_url(stack))
    page.wait_for_function("window.deskbellReady === true")

    context.set_offline(True)
    page.get_by_role("button", name="Open chat").click()
    box = page.get_by_role("textbox", name="Message")
    texts = [f"Offline message {n:02}" for n in range(1, 21)]
    for text in texts:
        box.fill(text)
        box.press("Enter")
    mine = page.locator(".m.visitor")
    expect(mine).to_have_count(20)
    expect(page.get_by_role("status")).to_be_visible()
    for n in range(20):
        expect(mine.nth(n)).to_have_attribute("data-state", "sending")
        expect(mine.nth(n).locator(".st")).to_have_text("Not delivered yet")

    page.reload()  # still offline: the page and widget.js come from the test, the thread from the outbox
    mine = page.locator(".m.visitor")
    expect(mine).to_have_count(20)
    assert mine.locator(".b").all_text_contents() == texts
    for n in range(20):
        expect(mine.nth(n)).to_have_attribute("data-state", "sending")

    context.set_offline(False)
    for n in range(20):
        expect(mine.nth(n)).to_have_attribute("data-state", "sent", timeout=20000)
        expect(mine.nth(n).locator(".st")).to_have_text("Sent")
    conversation_id = conversation_of(agent)
    assert agent.thread(conversation_id) == texts

    # The agent answers while the visitor is offline (panel closed): the answer and the badge come back with
    # the network.
    page.evaluate("Deskbell.on('unread', n => { window.unread = n })")
    page.keyboard.press("Escape")
    context.set_offline(True)
    expect(page.locator("deskbell-widget .note")).not_to_have_attribute("hidden", "")  # it noticed
    assert agent.reply(conversation_id, "Answered while you were away").status_code == 200
    page.wait_for_timeout(500)
    expect(page.locator(".m.agent")).to_have_count(0)
    context.set_offline(False)
    launcher = page.get_by_role("button", name="Open chat, 1 unread")
    expect(launcher).to_be_visible(timeout=20000)
    assert page.evaluate("window.unread") == 1
    launcher.click()
    expect(page.locator(".m.agent", has_text="Answered while you were away")).to_be_visible()
    expect(page.locator(".sub")).to_have_text(re.compile(r"^Chatting with \S"))
    assert page.evaluate("window.unread") == 0
    assert agent.thread(conversation_id) == [*texts, "Answered while you were away"]
    context.close()


@pytest.mark.parametrize(
    ("locale", "launcher", "welcome", "sent", "shot"),
    [
        ("en-GB", "Open chat", "Hi! How can we help?", "Sent", "widget-phone.png"),
        ("zh-CN", "打开聊天", "您好！有什么可以帮您？", "已发送", "widget-phone-zh.png"),
    ],
)
def test_widget_speaks_the_browser_language_and_shows_markup_as_text(
    stack: Stack,
    browser: Browser,
    artifacts: Path,
    locale: str,
    launcher: str,
    welcome: str,
    sent: str,
    shot: str,
) -> None:
    tenant = stack.bootstrap("lena")
    agent = logged_in_agent(stack.base_url, tenant)
    context = new_context(
        browser,
        locale=locale,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = context.new_page()
    dialogs = fail_on_dialogs(page)
    serve(context, shop_url(stack), host_page(stack, str(tenant["site_key"])))
    page.goto(shop_url(stack))

    page.get_by_role("button", name=launcher).click()
    expect(page.get_by_text(welcome)).to_be_visible()
    box = page.locator("deskbell-widget textarea:visible")  # the composer, not the hidden offline form
    box.fill(XSS)
    box.press("Enter")
    mine = page.locator(".m.visitor", has_text=XSS)
    expect(mine.locator(".st")).to_have_text(sent)
    conversation_id = conversation_of(agent)
    agent.reply(conversation_id, XSS)
    agent.reply(conversation_id, "Details: https://example.com/help?a=1. Not javascript:alert(2) nor <a href=x>")
    expect(page.locator(".m.agent", has_text=XSS)).to_be_visible()
    links = page.locator(".m.agent a")
    expect(links).to_have_count(1)
    expect(links).to_have_attribute("href", "https://example.com/help?a=1")
    expect(links).to_have_text("https://example.com/help?a=1")

    # Full screen on a phone, launcher out of the way of the composer.
    panel = page.get_by_role("dialog")
    assert panel.bounding_box() == {"x": 0, "y": 0, "width": 390, "height": 844}
    expect(page.locator("deskbell-widget .launch")).to_be_hidden()
    page.wait_for_timeout(300)  # let the list finish scrolling before the screenshot
    page.screenshot(path=str(artifacts / shot))

    assert page.locator("deskbell-widget img").count() == 0
    # Stored as text, the visitor's and the agent's. (Not their order: two replies posted back to back may be
    # stored in either order when several workers run; see the session note.)
    assert agent.thread(conversation_id).count(XSS) == 2
    assert dialogs == [], f"a message ran script: {dialogs}"
    context.close()


def test_js_api_queues_calls_and_sends_context_with_the_session(stack: Stack, browser: Browser) -> None:
    tenant = stack.bootstrap("mo")
    context = new_context(browser, locale="en-US", timezone_id="Asia/Shanghai", viewport={"width": 1024, "height": 700})
    page = context.new_page()
    stub = (
        "<script>window.Deskbell = window.Deskbell || {q: []};"
        "Deskbell.q.push(['identify', {external_id: 'u-42', name: 'Ada', email: 'ada@example.com', hash: 'abc'}]);"
        "Deskbell.q.push(['setAttributes', {plan: 'pro'}]);"
        "Deskbell.q.push(['on', 'ready', function (r) { window.readyWith = r; }]);</script>"
    )
    serve(context, shop_url(stack), host_page(stack, str(tenant["site_key"]), before=stub))
    with page.expect_request(lambda r: r.url.endswith("/api/v1/widget/session") and r.method == "POST") as first:
        page.goto(shop_url(stack))
    body = json.loads(first.value.post_data)
    assert body["identity"] == {"external_id": "u-42", "name": "Ada", "email": "ada@example.com", "hash": "abc"}
    assert body["attributes"] == {"plan": "pro"}
    assert body["language"] == "en-US"
    assert body["timezone"] == "Asia/Shanghai"
    assert body["screen"] == page.evaluate("screen.width + 'x' + screen.height")
    page.wait_for_function("window.readyWith && window.readyWith.visitor_id")

    # identify() after load starts a new session carrying the new identity.
    with page.expect_request(lambda r: r.url.endswith("/api/v1/widget/session") and r.method == "POST") as again:
        page.evaluate("Deskbell.identify({external_id: 'u-43', hash: 'def'})")
    assert json.loads(again.value.post_data)["identity"] == {"external_id": "u-43", "hash": "def"}

    # Keyboard: open from the launcher, focus in the composer, Escape closes and gives focus back.
    launcher = page.get_by_role("button", name="Open chat")
    launcher.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_be_visible()
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(launcher).to_be_focused()
    page.evaluate("Deskbell.toggle()")
    expect(page.get_by_role("dialog")).to_be_visible()
    page.evaluate("Deskbell.close()")
    expect(page.get_by_role("dialog")).to_be_hidden()
    context.close()


def test_identify_with_the_sites_hash_shows_the_visitor_to_the_agent_and_a_wrong_one_does_not(
    stack: Stack, browser: Browser
) -> None:
    from sqlalchemy import select

    from desk.db import system_session
    from desk.models import Site
    from desk.visitor_context import identity_hash

    tenant = stack.bootstrap("uma")
    with system_session() as session:
        secret = session.scalar(select(Site.identity_secret).where(Site.site_key == tenant["site_key"]))

    def chat_as(external_id: str, hash_: str, text: str) -> dict[str, object]:
        context = new_context(browser)
        page = context.new_page()
        identity = {"external_id": external_id, "name": "Grace Hopper", "email": "grace@example.com", "hash": hash_}
        stub = (
            "<script>window.Deskbell = window.Deskbell || {q: []};"
            f"Deskbell.q.push(['identify', {json.dumps(identity)}]);"
            "Deskbell.q.push(['on', 'ready', function (r) { window.readyWith = r; }]);</script>"
        )
        serve(context, shop_url(stack), host_page(stack, str(tenant["site_key"]), before=stub))
        page.goto(shop_url(stack))
        page.wait_for_function("window.readyWith && window.readyWith.visitor_id")
        ready = page.evaluate("window.readyWith")
        page.get_by_role("button", name="Open chat").click()
        box = page.get_by_role("textbox", name="Message")
        box.fill(text)
        box.press("Enter")
        expect(page.locator(".m.visitor", has_text=text)).to_have_attribute("data-state", "sent")
        context.close()
        return ready

    assert chat_as("user-7", identity_hash(secret, "user-7"), "Hello as Grace")["identified"] is True
    assert chat_as("user-8", "0" * 64, "Hello as an impostor")["identified"] is False

    agent = logged_in_agent(stack.base_url, tenant)
    inbox = agent.client.get("/console").text
    panels = {}  # the first message of each conversation -> the visitor panel beside it
    for conversation_id in dict.fromkeys(re.findall(r"/console/c/([0-9a-f-]{36})", inbox)):
        page = agent.conversation_page(conversation_id)
        start = page.index('<details class="visitor-panel')
        panels[agent.thread(conversation_id)[0]] = page[start : page.index("</details>", start)]
    assert "Grace Hopper" in panels["Hello as Grace"] and "grace@example.com" in panels["Hello as Grace"]
    assert "anonymous" in panels["Hello as an impostor"]
    assert "Grace Hopper" not in panels["Hello as an impostor"]


def test_the_widget_pings_at_the_servers_heartbeat_so_the_server_sends_no_pings(stack: Stack, browser: Browser) -> None:
    """One round trip per heartbeat on an idle chat: the widget follows welcome.heartbeat_seconds (here 4 s), pings
    after 0.6 of it, and the server, hearing from it within each heartbeat, sends no pings of its own."""
    tenant = stack.bootstrap("hib")
    sockets: list[Any] = []
    sent: list[str] = []
    received: list[str] = []

    def watch(ws: Any) -> None:
        sockets.append(ws)
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)["type"]))
        ws.on("framereceived", lambda payload: received.append(json.loads(payload)["type"]))

    with stack.another_web(DESKBELL_HEARTBEAT_SECONDS="4") as base_url:
        context = new_context(browser)
        page = context.new_page()
        page.on("websocket", watch)
        page.goto(f"{base_url}/demo?site_key={tenant['site_key']}")
        page.get_by_role("button", name="Open chat").click()
        expect(page.get_by_role("textbox", name="Message")).to_be_enabled()
        page.wait_for_timeout(13000)  # over three heartbeats, nothing typed
        context.close()
    assert len(sockets) == 1  # never dropped as dead
    assert received[0] == "welcome"
    assert sent.count("ping") >= 3, sent  # every 2.4 to 3.2 s
    assert received.count("pong") >= 3 and "ping" not in received, received


def test_a_socket_that_goes_silent_is_dropped_and_the_message_still_arrives(stack: Stack, browser: Browser) -> None:
    """A dead connection sends no close (a laptop lid, a changed network): the widget's heartbeat notices."""
    from tests.faults.proxy import Proxy

    tenant = stack.bootstrap("vic")
    proxy = Proxy(int(stack.base_url.rsplit(":", 1)[1])).start()
    try:
        context = new_context(browser)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{proxy.port}/demo?site_key={tenant['site_key']}")
        page.get_by_role("button", name="Open chat").click()
        box = page.get_by_role("textbox", name="Message")
        box.fill("Before the silence")
        box.press("Enter")
        expect(page.locator(".m.visitor", has_text="Before the silence")).to_have_attribute("data-state", "sent")

        proxy.set("blackhole")  # bytes vanish both ways; nothing is closed
        box.fill("Typed into the silence")
        box.press("Enter")
        # widget.js drops a socket silent for 22 s, checked every 4 s
        expect(page.get_by_role("status").filter(has_text="offline")).to_be_visible(timeout=35000)
        proxy.set("pass")
        expect(page.locator(".m.visitor", has_text="Typed into the silence")).to_have_attribute(
            "data-state", "sent", timeout=30000
        )
        context.close()
    finally:
        proxy.stop()
    agent = logged_in_agent(stack.base_url, tenant)
    conversation_id = re.findall(r"/console/c/([0-9a-f-]{36})", agent.client.get("/console").text)[0]
    assert agent.thread(conversation_id) == ["Before the silence", "Typed into the silence"]
