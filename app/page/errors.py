"""Refusals: one sentence for the person, one line in the console, never a traceback."""

from __future__ import annotations

import logging

import gradio as gr

log = logging.getLogger("loupe.app")


def refused(reason: Exception | str) -> gr.Error:
    """The error to raise for input or a state the app refuses (a deleted conversation, an
    unknown level, a busy model): its sentence for the person, and one log line, because a
    refusal is not a fault and a traceback would make the console look broken."""
    sentence = str(reason)
    log.info("Refused: %s", sentence)
    return gr.Error(sentence, print_exception=False)
