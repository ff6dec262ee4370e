"""Pop-ups the page shows while a reply is written."""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from ..tasks.reply import Reply, dropped_note


def noted(replies: Iterator[Reply]) -> Iterator[Reply]:
    """`replies` as they come, with a pop-up each time more of the oldest messages are left out
    of the prompt (the conversation outgrew the context window)."""
    said = 0
    for reply in replies:
        if reply.dropped != said:
            said = reply.dropped
            gr.Info(dropped_note(said))
        yield reply
