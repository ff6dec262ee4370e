"""The message box's value: a MultimodalTextbox value, {"text": str, "files": [...]}."""

from __future__ import annotations

from typing import Any

import gradio as gr


def with_file(value: dict | None, path: str | None) -> Any:
    """The message box's value with one more attachment (a snapshot, a recording)."""
    if not path:
        return gr.skip()
    value = value or {}
    return {"text": value.get("text") or "", "files": [*(value.get("files") or []), path]}
