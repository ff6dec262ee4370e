"""Who a page event or API call acts for: the user name it logged in with (--auth), or the
local user when Loupe has no login. Conversations and batches belong to that name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr

from ..history import LOCAL_USER


def user_of(request: gr.Request | None) -> str:
    """The logged-in user name of a request (LOCAL_USER without --auth)."""
    return (getattr(request, "username", None) or LOCAL_USER) if request else LOCAL_USER


def for_user(handler: Callable[..., Any]) -> Callable[..., Any]:
    """A page event's handler, which takes its inputs by position and the user by keyword,
    as Gradio calls it: with the request first (Gradio fills in a parameter annotated
    gr.Request), whose user name becomes `user`."""
    if inspect.isgeneratorfunction(handler):

        def streamed(request: gr.Request, *inputs: Any) -> Any:
            yield from handler(*inputs, user=user_of(request))

        return streamed

    def called(request: gr.Request, *inputs: Any) -> Any:
        return handler(*inputs, user=user_of(request))

    return called
