"""With --auth: the ASGI guards that hold every Gradio route to a login, a saved conversation's
files to its owner, and Gradio's login form to a slower answer for repeated wrong passwords."""

from __future__ import annotations

import math
import os
from pathlib import Path

from starlette.middleware import Middleware
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import AppConfig
from .history import History
from .login_throttle import FailedLogins, refusal

GRADIO_API_PREFIX = "/gradio_api/"
LOGIN_PATHS = ("/login", "/login/")
# Gradio calls this route itself while it starts, with no login; it runs the startup events
# once (they have run by the time anyone could call it) and says whether it did.
OPEN_GRADIO_ROUTES = ("/gradio_api/startup-events",)
LOG_IN_FIRST = "Log in to Loupe first."
FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/")  # Gradio's route, and its older name


class LoginRequired:
    """ASGI middleware, with --auth: every Gradio route under /gradio_api/ needs a login.
    Gradio guards most of them itself, but not all: POST /gradio_api/cancel, for one, would
    stop anyone's reply for a caller who never logged in."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in ("http", "websocket")
            or not route_path(scope).startswith(GRADIO_API_PREFIX)
            or route_path(scope) in OPEN_GRADIO_ROUTES
            or _logged_in(scope)
        ):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await JSONResponse({"detail": LOG_IN_FIRST}, 401)(scope, receive, send)


class OwnFilesOnly:
    """ASGI middleware, with --auth: Gradio serves a saved conversation's files and exports by
    their path (under files/ID/ and exports/ID/) to any login; these go to the conversation's
    owner alone, others get 404 as for a file that is not there."""

    def __init__(self, app: ASGIApp, history: History) -> None:
        self.app = app
        self.history = history

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        if scope["type"] == "http" and path.startswith(FILE_ROUTES):
            # The path as Gradio's route reads it: the server has decoded it once already.
            conversation_id = self._conversation_of(path[len(FILE_ROUTES[0]) :])
            if conversation_id and not self.history.get(conversation_id, _user(scope) or ""):
                await PlainTextResponse("Not found.", status_code=404)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _conversation_of(self, file: str) -> str | None:
        """The id of the conversation a served path belongs to, or None for other files."""
        real = Path(os.path.realpath(file))
        for folder in (self.history.files_dir, self.history.exports_dir):
            if real.is_relative_to(folder.resolve()) and real != folder.resolve():
                return real.relative_to(folder.resolve()).parts[0]
        return None


class LoginThrottle:
    """ASGI middleware in front of Gradio's POST /login, which would check any number of
    passwords as fast as they come: a try made before its client's wait is over (see
    FailedLogins) gets 429, Retry-After and a sentence, and its password is not checked."""

    def __init__(self, app: ASGIApp, failures: FailedLogins) -> None:
        self.app = app
        self.failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or route_path(scope) not in LOGIN_PATHS
        ):
            await self.app(scope, receive, send)
            return
        address = (scope.get("client") or ("",))[0]
        wait_s = self.failures.wait_s(address)
        if wait_s > 0:
            headers = {"Retry-After": str(math.ceil(wait_s))}
            response = JSONResponse({"detail": refusal(wait_s)}, 429, headers=headers)
            await response(scope, receive, send)
            return
        self.failures.tried(address)

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                self.failures.succeeded(address)
            await send(message)

        await self.app(scope, receive, watch)


def login_guards(config: AppConfig, history: History) -> list[Middleware]:
    """With --auth: the throttle on wrong passwords, a login for all of Gradio's API, and each
    conversation's files for its owner alone."""
    if not config.auth:
        return []
    return [
        Middleware(LoginThrottle, failures=FailedLogins()),
        Middleware(LoginRequired),
        Middleware(OwnFilesOnly, history=history),
    ]


def route_path(scope: Scope) -> str:
    """The path as routes match it: without the root path a proxy may mount Loupe under."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _logged_in(scope: Scope) -> bool:
    return _user(scope) is not None


def _user(scope: Scope) -> str | None:
    """The user name of the login whose cookie the request carries, or None (Starlette puts
    the Gradio app, which keeps the logins, in the scope; the cookies are named as Gradio
    names them)."""
    app = scope.get("app")
    cookies = HTTPConnection(scope).cookies
    suffix = getattr(app, "cookie_id", None)
    token = cookies.get(f"access-token-{suffix}") or cookies.get(f"access-token-unsecure-{suffix}")
    return getattr(app, "tokens", {}).get(token) if token else None
