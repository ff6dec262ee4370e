"""Loupe's OpenAI-compatible API (/v1) on the page's port; the key that guards it is server.py's."""

from .routes import routes

__all__ = ["routes"]
