"""Cross-origin calls to /v1 from the web apps a person names (--allowed-origin): Starlette's
CORS middleware answers their browsers' preflight (before the key guard: a preflight carries no
key) and lets their pages read /v1's answers. The host guard (app/server.py) refuses every
other origin, and every origin on the page's own routes, before it is reached.

Starlette's own class, not a copy: Gradio then leaves CORS to it (Gradio's own CORS answers
any site's preflight with a "yes" that the guard's 403 then contradicts)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

ALLOWED_HEADERS = ["Authorization", "Content-Type", "OpenAI-Organization", "OpenAI-Project"]
PREFLIGHT_MAX_AGE_S = 600


def origin_of(url: str) -> str:
    """`url` as browsers send it in Origin ("https://app.example:8443"); ValueError with one
    sentence for anything that is not an http(s) origin."""
    parts = urlsplit(url.strip().lower().rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise ValueError(
            f"--allowed-origin takes a web app's origin such as https://app.example.com "
            f"(scheme, host and port, no path), not {url!r}."
        )
    return f"{parts.scheme}://{parts.netloc}"


def api_cors(origins: tuple[str, ...]) -> Middleware:
    """The CORS middleware for `origins` (none: no cross-origin call is let through)."""
    return Middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=ALLOWED_HEADERS,
        # Browsers ask before a public web site's page calls a server on this machine or this
        # network (Private Network Access): allowed origins get a yes to that too.
        allow_private_network=True,
        max_age=PREFLIGHT_MAX_AGE_S,
    )
