"""Serves the page with safe settings: /health, the OpenAI-compatible /v1 and the MCP server
/mcp behind their key (and CORS for the web apps --allowed-origin names), upload limits, a guard
on Host and Origin, and with --auth the login guards of login_guards.py."""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from typing import Any
from urllib.parse import urlsplit

import gradio as gr
from fastapi.routing import APIRoute
from gradio.route_utils import CustomCORSMiddleware
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from model.openai_wire import error_body

from . import v1
from .config import AppConfig
from .health import health_document
from .login_guards import login_guards, route_path
from .login_throttle import LOGIN_NOTE
from .mcp import mcp_routes
from .page.chat_events import ChatHandlers
from .page.desktop import open_window
from .page.layout import build_ui
from .page.scripts import PAGE_CSS, page_js
from .tasks.batch_runs import batches_folder
from .v1.cors import api_cors

LOOPBACK = ("127.0.0.1", "localhost", "::1")
QUEUE_POLL_S = 0.02  # how often Gradio's queue looks for a new event while it has none
PROGRESS_POLL_S = 0.1  # and for progress to send while events run
FOREIGN_HOST = "Loupe does not answer to this host name; start it with --allowed-host to add one."
FOREIGN_ORIGIN = "Loupe does not take requests from other web sites."
FOREIGN_API_ORIGIN = (
    "Loupe's API does not take requests from this web site; start Loupe with "
    "--allowed-origin ORIGIN to let a web app there call it."
)
API_PREFIXES = ("/v1", "/mcp")  # the programs' API: the OpenAI-compatible one, and MCP
WRONG_KEY = (
    "Loupe's API (/v1 and /mcp) needs the key Loupe was started with (--api-key), sent as "
    "Authorization: Bearer KEY."
)


class HostGuard:
    """ASGI middleware refusing requests (403) that name a host Loupe does not serve, which is
    how DNS rebinding reaches a local server, and requests a web page of another origin sends
    (cross-site request forgery). Gradio itself accepts any Host."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: set[str],
        any_ip: bool,
        api_origins: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.hosts = hosts  # a live set: the share link's host joins it once it exists
        self.any_ip = any_ip
        self.api_origins = api_origins  # web apps that may call /v1 (--allowed-origin)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        api = route_path(scope).startswith(API_PREFIXES)
        problem = self.problem(Headers(scope=scope), api)
        if problem is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: a 403
        elif api:  # in OpenAI's shape, as everything under /v1 (an MCP client shows it too)
            status, body = error_body("forbidden", problem)
            await JSONResponse(body, status)(scope, receive, send)
        else:
            await PlainTextResponse(problem, status_code=403)(scope, receive, send)

    def problem(self, headers: Headers, api: bool = False) -> str | None:
        """Why the request is refused, or None. `api`: a request to /v1 or /mcp, which the
        web apps of --allowed-origin may send too."""
        host = headers.get("host", "")
        if not self.allows(_split(f"//{host}")[1]):
            return FOREIGN_HOST
        origin = headers.get("origin")
        # A browser names the page that sent a request; only Loupe's own page may.
        if origin is None or _split(origin)[0] == host.lower():
            return None
        if api and origin.lower() in self.api_origins:
            return None
        return FOREIGN_ORIGIN if not api else FOREIGN_API_ORIGIN

    def allows(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        if name in self.hosts:
            return True
        # An address typed as digits cannot be rebound: rebinding needs a name the attacker owns.
        return self.any_ip and _is_ip(name)


class ApiKeyGuard:
    """ASGI middleware for the programs' API (paths under /v1 and /mcp): with --api-key, requests
    must carry it as a Bearer token (compared in constant time); without one, /v1 answers only
    where the page itself needs no login, on this machine alone (see `api_closed_reason`).
    Gradio's --auth guards Gradio's own routes, not these, so /v1 is never a way around it."""

    def __init__(self, app: ASGIApp, key: str, closed_reason: str | None) -> None:
        self.app = app
        self.key = key.encode()
        self.closed_reason = closed_reason

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = None
        if scope["type"] in ("http", "websocket") and route_path(scope).startswith(API_PREFIXES):
            problem = self.problem(Headers(scope=scope))
        if problem is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            status, body = error_body("unauthorized", problem)
            headers = {"WWW-Authenticate": "Bearer"}
            await JSONResponse(body, status, headers=headers)(scope, receive, send)

    def problem(self, headers: Headers) -> str | None:
        """Why the request is refused, or None."""
        if not self.key:
            if self.closed_reason is None:
                return None
            return (
                f"Loupe's API (/v1 and /mcp) is closed because {self.closed_reason}; start "
                "Loupe with --api-key KEY (or LOUPE_API_KEY) and send Authorization: Bearer KEY."
            )
        scheme, _, token = headers.get("authorization", "").partition(" ")
        # Starlette reads header bytes as Latin-1: encoded back, they are the bytes sent.
        sent = token.strip().encode("latin-1")
        if scheme.lower() == "bearer" and hmac.compare_digest(sent, self.key):
            return None
        return WRONG_KEY


def api_closed_reason(config: AppConfig) -> str | None:
    """Why /v1 refuses every request when no --api-key is set, or None where it is open: only
    on this machine alone (loopback), with no login and no public share link."""
    if config.api_key:
        return None
    if config.host not in LOOPBACK:
        return f"Loupe listens on the network ({config.host}) and no --api-key is set"
    if config.auth:
        return "the page has a login (--auth) and no --api-key is set"
    if config.share:
        return "the page has a public share link (--share) and no --api-key is set"
    return None


def allowed_hosts(config: AppConfig) -> tuple[set[str], bool]:
    """The host names the page answers to, and whether any IP address is fine too (when it
    listens beyond this machine, people reach it by the machine's address or name)."""
    hosts = {*LOOPBACK, config.host.lower(), *config.allowed_hosts}
    open_to_network = config.host not in LOOPBACK
    if open_to_network:
        name = socket.gethostname().lower()
        hosts |= {name, f"{name}.local"}
    return hosts, open_to_network


def quiet_when_idle(page: gr.Blocks) -> None:
    """Gradio's queue looks for new events every millisecond on Linux (every 50 ms on Windows),
    which keeps an idle Loupe at about 8% of a core. Every 20 ms is as quick to a person and
    lets an idle machine idle; progress bars update ten times a second, as on Windows."""
    queue = page._queue
    queue.sleep_when_free = QUEUE_POLL_S
    queue.progress_update_sleep_when_free = PROGRESS_POLL_S


def serve(handlers: ChatHandlers, config: AppConfig) -> None:
    """Serve until interrupted (the caller closes the engine). The model keeps loading in the
    background meanwhile."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Gradio's CORS middleware sits outside Loupe's guards and answers any site's preflight
    # itself; it steps aside when the app around it configures CORS, as Loupe does (v1/cors.py).
    CustomCORSMiddleware.parent_configures_cors = lambda _self: True
    page = build_ui(handlers, desktop=config.desktop)
    # No limit of Gradio's own: the engine's bounded queue is the one limit, so a request past
    # it is told "busy" at once instead of waiting unseen in Gradio's queue.
    page.queue(default_concurrency_limit=None)
    quiet_when_idle(page)

    def health() -> dict[str, Any]:
        return health_document(handlers.engine.status(), config)

    hosts, open_to_network = allowed_hosts(config)
    if open_to_network and not config.auth:
        print(
            f"Warning: Loupe is open to the network on {config.host} without --auth; "
            "anyone who can reach this machine can use it.",
            flush=True,
        )
    closed = api_closed_reason(config)
    if closed:
        print(
            f"Loupe's API (the OpenAI-compatible /v1 and the MCP server /mcp) is closed: "
            f"{closed}; start Loupe with --api-key to use it.",
            flush=True,
        )
    _, local_url, share_url = page.launch(
        server_name=config.host,
        server_port=config.port,
        share=config.share,
        auth=list(config.auth) or None,
        auth_message=LOGIN_NOTE,
        ssr_mode=False,
        js=page_js(config.desktop),
        css_paths=[PAGE_CSS],
        # The images of saved conversations, which the page shows, and the exports it offers
        # for download; not the database beside them.
        allowed_paths=[
            str(handlers.history.files_dir),
            str(handlers.history.exports_dir),
            str(batches_folder(handlers.history.data_dir)),  # the Batch view's images and results
        ],
        enable_monitoring=False,
        # Gradio's own Settings (its PWA, screen recorder and run history) would sit beside
        # Loupe's Settings; the footer keeps the API page and Gradio's credit.
        footer_links=["api", "gradio"],
        max_file_size=config.limits.max_file_mb * 1024 * 1024,
        num_workers=0,  # Gradio's static file workers would serve outside the guard
        app_kwargs={
            "middleware": [
                Middleware(
                    HostGuard,
                    hosts=hosts,
                    any_ip=open_to_network,
                    api_origins=frozenset(config.allowed_origins),
                ),
                # A browser's preflight carries no key: answered before the key guard.
                api_cors(config.allowed_origins),
                Middleware(ApiKeyGuard, key=config.api_key, closed_reason=closed),
                *login_guards(config, handlers.history),
            ],
            # Routed before Gradio's own, so /health and /v1 answer from the first request.
            "routes": [
                APIRoute("/health", health, methods=["GET"]),
                *v1.routes(handlers.engine, handlers.voice, config.limits),
                *mcp_routes(handlers.replies, handlers.voice, config.limits, config.desktop),
            ],
        },
        prevent_thread_lock=True,
        inbrowser=False,
        quiet=True,
    )
    if share_url:
        # The share link's tunnel passes the public host name through.
        hosts.add(urlsplit(share_url).hostname or "")
        print(f"Loupe's public share link: {share_url}", flush=True)
    print(f"Loupe is running on {local_url}", flush=True)
    if open_to_network:
        addresses = ", ".join(network_urls(config.port))
        print(f"Other machines on your network reach it at {addresses}", flush=True)
    if config.desktop:
        open_window(local_url, page.block_thread)
    else:
        page.block_thread()


def network_urls(port: int) -> list[str]:
    """The addresses other machines can use for this one: its name, then its IPv4 addresses
    (loopback aside), as the name lookup of this machine gives them."""
    name = socket.gethostname()
    try:
        found = socket.getaddrinfo(name, None, socket.AF_INET)
    except OSError:  # the machine's own name does not resolve
        found = []
    addresses = sorted({entry[4][0] for entry in found} - {"127.0.0.1", "127.0.1.1"})
    return [f"http://{host}:{port}" for host in (name, *addresses)]


def _split(url: str) -> tuple[str, str]:
    """(host:port, host name) of a URL, lower-case; empty for ones that do not parse."""
    try:
        parts = urlsplit(url)
        return parts.netloc.lower(), parts.hostname or ""
    except ValueError:  # for example an unclosed IPv6 bracket
        return "", ""


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
