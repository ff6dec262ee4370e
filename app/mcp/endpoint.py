"""Loupe as an MCP server: the tools of tools.py at /mcp on the page's port, over MCP's
Streamable HTTP transport (the official `mcp` SDK), guarded as /v1 is (server.py: the API key,
this machine alone without one, the Host and Origin checks).

The SDK's own server fits better than Gradio's built-in one, which would serve every named
Gradio endpoint (the page's events included) as a tool and needs older `mcp` and pydantic
releases than Loupe's. Requests are stateless (each answered on its own, as JSON), so nothing
is kept between them and any number of agents can call at once; the engine's queue is the
one limit, as for the page.
"""

from __future__ import annotations

import asyncio
import logging

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Limits
from ..intake.speech import Speech
from ..tasks.replies import Replies
from .tools import Tools

PATH = "/mcp"
MB = 1024 * 1024
# What Loupe tells an agent about itself when it connects.
INSTRUCTIONS = (
    "Loupe runs Gemma 4 on this machine: it describes images for people who cannot see them, "
    "answers questions about screenshots and photos, reads the text of images and PDFs, "
    "transcribes recordings and checks an image's content. Files go as base64. Descriptions "
    "are the model's and may be wrong."
)


def mcp_routes(
    replies: Replies, speech: Speech, limits: Limits, desktop: bool = False
) -> list[BaseRoute]:
    """The route that serves the MCP endpoint at /mcp; `desktop`: Loupe runs in desktop mode,
    at the person's own screen, which one tool then looks at."""
    server = _quiet_server()
    for tool in tools_offered(Tools(replies, speech, limits), desktop):
        server.add_tool(tool)
    # The files one message may send, as base64, with room for the rest of the request.
    body_limit = (limits.max_file_mb * limits.max_files_per_message * 4 // 3 + 1) * MB
    app = server.streamable_http_app(
        streamable_http_path="/",
        stateless_http=True,
        json_response=True,
        max_request_body_size=body_limit,
        # Host and Origin are server.py's HostGuard's to check, as for the whole port.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return [Mount(PATH, app=_Running(app, server))]


def tools_offered(tools: Tools, desktop: bool) -> list:
    """The tools an agent may call: look_at_screen in desktop mode only, where the screen is
    the person's own and they started Loupe at it."""
    offered = [
        tools.describe_image,
        tools.ask_about_image,
        tools.read_text,
        tools.transcribe,
        tools.check_content,
    ]
    return [*offered, tools.look_at_screen] if desktop else offered


def _quiet_server() -> MCPServer:
    """The SDK's server. Made for a process of its own, it sets up the root logger (a rich
    console handler at INFO): Loupe's console is put back as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    server = MCPServer("Loupe", instructions=INSTRUCTIONS)
    root.handlers[:] = handlers
    root.setLevel(level)
    return server


class _Running:
    """The MCP app, its session manager started in the server's own event loop at the first
    request (the page's app runs no lifespan of a mounted app) and kept running."""

    def __init__(self, app: ASGIApp, server: MCPServer):
        self.app = app
        self.server = server
        self._started: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._start()
        await self.app(scope, receive, send)

    async def _start(self) -> None:
        if self._started is None:
            self._started = asyncio.Event()
            asyncio.get_running_loop().create_task(self._run(self._started))
        await self._started.wait()

    async def _run(self, started: asyncio.Event) -> None:
        async with self.server.session_manager.run():
            started.set()
            await asyncio.Event().wait()  # until the server's loop ends
