"""The one ASGI application that Hypercorn serves: the socket edge, and Flask for everything else.

`hypercorn web.asgi:app` (see Procfile). Routes: /ws/visitor (web/edge/visitor.py), /lp/visitor
(web/edge/polling.py), the widget's session request (web/edge/session.py), /live/console (web/edge/console.py),
and the rest to Flask through asgiref's WsgiToAsgi.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from asgiref.sync import sync_to_async
from asgiref.wsgi import WsgiToAsgi, WsgiToAsgiInstance
from flask import Flask
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route, WebSocketRoute

from desk import logs, settings
from web import create_app, security
from web.edge import polling, session
from web.edge.abuse import EdgeLimits
from web.edge.console import console_stream
from web.edge.hub import Hub
from web.edge.visitor import visitor_endpoint

log = logging.getLogger(__name__)


# asgiref runs every WSGI request on one shared thread (thread_sensitive=True). Flask is thread-safe, so its
# requests run side by side on threads of their own, apart from the event loop's default executor that the
# edge's sockets use for PostgreSQL: a slow page never delays a visitor's ack.
FLASK_THREADS = 16


class _ThreadedInstance(WsgiToAsgiInstance):
    run_wsgi_app = sync_to_async(
        WsgiToAsgiInstance.__dict__["run_wsgi_app"].func,
        thread_sensitive=False,
        executor=ThreadPoolExecutor(FLASK_THREADS, thread_name_prefix="flask"),
    )


class ThreadedWsgiToAsgi(WsgiToAsgi):
    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        await _ThreadedInstance(self.wsgi_application)(scope, receive, send)


def build() -> Starlette:
    """The application of a `web` process: its logging, its NATS connection (the hub), and Flask."""
    config = settings.load()
    logs.configure("web")
    logging.getLogger("hypercorn.error").propagate = False  # Hypercorn prints its own lines already
    if not config.nats_url:
        raise RuntimeError("NATS_URL is not set (the dev runner sets it for the embedded nats-server)")
    return application(config, create_app(), Hub(config.nats_url))


def application(config: settings.Settings, flask_app: Flask, hub: Hub) -> Starlette:
    """The routes and the transport rules in front of them; tests serve it in-process (the hub is started with the
    application's lifespan, which an in-process client that sends no lifespan events never starts)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        if config.development:
            log.warning(
                "development mode: plain HTTP from loopback only, secure cookies off; "
                "set DESKBELL_ENV=production to serve"
            )
        yield
        await hub.stop()

    app = Starlette(
        routes=[
            WebSocketRoute("/ws/visitor", visitor_endpoint),
            Route("/live/console", console_stream),
            Route("/lp/visitor", polling.poll, methods=["GET"]),
            Route("/lp/visitor", polling.send, methods=["POST"]),
            # Every method, so that a wrong one gets the JSON 405 (GET brings HEAD).
            Route(session.PATH, session.session, methods=["POST", "OPTIONS", "GET", "PUT", "PATCH", "DELETE"]),
            Mount("/", app=ThreadedWsgiToAsgi(flask_app)),
        ],
        # TLS in production, loopback in development, X-Forwarded-* from trusted proxies only: for every route.
        middleware=[Middleware(security.Transport, config=config)],
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.hub = hub
    app.state.abuse = EdgeLimits(config.limits)  # per process (docs/operations.md, "Abuse limits")
    app.state.flask = flask_app
    return app


def __getattr__(name: str) -> Starlette:
    """`web.asgi:app`, built when it is first asked for (PEP 562): importing `application` sets up no process."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()["app"] = built = build()
    return built
