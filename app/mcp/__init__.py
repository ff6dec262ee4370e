"""Loupe as an MCP server (/mcp): its tools for agents, over the same intake and queue as /v1;
the key and host checks that guard it are server.py's."""

from .endpoint import mcp_routes

__all__ = ["mcp_routes"]
