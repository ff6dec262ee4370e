"""Serves the page with safe settings: /health, upload limits, a guard on Host and Origin."""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit

from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import AppConfig
from .desktop import open_window
from .handlers import ChatHandlers
from .ui import PAGE_CSS, build_ui, page_js

LOOPBACK = ("127.0.0.1", "localhost", "::1")
FOREIGN_HOST = "Loupe does not answer to this host name; start it with --allowed-host to add one."
FOREIGN_ORIGIN = "Loupe does not take requests from other web sites."


class HostGuard:
    """ASGI middleware refusing requests (403) that name a host Loupe does not serve, which is
    how DNS rebinding reaches a local server, and requests a web page of another origin sends
    (cross-site request forgery). Gradio itself accepts any Host."""

    def __init__(self, app: ASGIApp, hosts: set[str], any_ip: bool) -> None:
        self.app = app
        self.hosts = hosts  # a live set: the share link's host joins it once it exists
        self.any_ip = any_ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        problem = self.problem(Headers(scope=scope))
        if problem is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: a 403
        else:
            await PlainTextResponse(problem, status_code=403)(scope, receive, send)

    def problem(self, headers: Headers) -> str | None:
        """Why the request is refused, or None."""
        host = headers.get("host", "")
        if not self.allows(_split(f"//{host}")[1]):
            return FOREIGN_HOST
        origin = headers.get("origin")
        # A browser names the page that sent a request; only Loupe's own page may.
        if origin is not None and _split(origin)[0] != host.lower():
            return FOREIGN_ORIGIN
        return None

    def allows(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        if name in self.hosts:
            return True
        # An address typed as digits cannot be rebound: rebinding needs a name the attacker owns.
        return self.any_ip and _is_ip(name)


def allowed_hosts(config: AppConfig) -> tuple[set[str], bool]:
    """The host names the page answers to, and whether any IP address is fine too (when it
    listens beyond this machine, people reach it by the machine's address or name)."""
    hosts = {*LOOPBACK, config.host.lower(), *config.allowed_hosts}
    open_to_network = config.host not in LOOPBACK
    if open_to_network:
        name = socket.gethostname().lower()
        hosts |= {name, f"{name}.local"}
    return hosts, open_to_network


def serve(handlers: ChatHandlers, config: AppConfig) -> None:
    """Serve until interrupted (the caller closes the engine). The model keeps loading in the
    background meanwhile."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    page = build_ui(handlers, desktop=config.desktop)
    # No limit of Gradio's own: the engine's bounded queue is the one limit, so a request past
    # it is told "busy" at once instead of waiting unseen in Gradio's queue.
    page.queue(default_concurrency_limit=None)
    hosts, open_to_network = allowed_hosts(config)
    if open_to_network and config.auth is None:
        print(
            f"Warning: Loupe is open to the network on {config.host} without --auth; "
            "anyone who can reach this machine can use it.",
            flush=True,
        )
    _, local_url, share_url = page.launch(
        server_name=config.host,
        server_port=config.port,
        share=config.share,
        auth=config.auth,
        ssr_mode=False,
        js=page_js(config.desktop),
        css_paths=[PAGE_CSS],
        # The images of saved conversations, which the page shows, and the exports it offers
        # for download; not the database beside them.
        allowed_paths=[str(handlers.history.files_dir), str(handlers.history.exports_dir)],
        enable_monitoring=False,
        max_file_size=config.limits.max_file_mb * 1024 * 1024,
        num_workers=0,  # Gradio's static file workers would serve outside the guard
        app_kwargs={
            "middleware": [Middleware(HostGuard, hosts=hosts, any_ip=open_to_network)],
            # Routed before Gradio's own, so /health answers from the first request.
            "routes": [APIRoute("/health", handlers.health, methods=["GET"])],
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
