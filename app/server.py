"""Serves the page with safe settings and adds GET /health."""

from __future__ import annotations

import os

from .config import AppConfig
from .desktop import open_window
from .handlers import ChatHandlers
from .ui import PAGE_CSS, build_ui, page_js

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(handlers: ChatHandlers, config: AppConfig) -> None:
    """Serve until interrupted. The model keeps loading in the background meanwhile."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    page = build_ui(handlers, desktop=config.desktop)
    page.queue(default_concurrency_limit=config.limits.queue_size + 1)
    if config.host not in LOOPBACK and config.auth is None:
        print(
            f"Warning: Loupe is open to the network on {config.host} without --auth; "
            "anyone who can reach this machine can use it.",
            flush=True,
        )
    _, local_url, _ = page.launch(
        server_name=config.host,
        server_port=config.port,
        share=config.share,
        auth=config.auth,
        ssr_mode=False,
        js=page_js(config.desktop),
        css_paths=[PAGE_CSS],
        allowed_paths=[str(config.data_dir)],  # the images of saved conversations
        enable_monitoring=False,
        prevent_thread_lock=True,
        inbrowser=False,
        quiet=True,
    )
    page.app.add_api_route("/health", handlers.health, methods=["GET"])
    print(f"Loupe is running on {local_url}", flush=True)
    try:
        if config.desktop:
            open_window(local_url, page.block_thread)
        else:
            page.block_thread()
    finally:
        handlers.engine.close()
