"""Gradio's own checks of what a call sends (a slider's range, a dropdown's choices, a file that
was not uploaded, a value of the wrong shape), refused as Loupe refuses: one sentence that names
the input, one log line, no traceback.

Gradio raises these while it prepares an event's inputs, before Loupe's handler runs, with
sentences that do not say which input ("Value -1 is less than minimum value 0.0.") or with none
the caller sees (a file not uploaded, a wrong type: a traceback in the console and "The upstream
Gradio app has raised an exception")."""

from __future__ import annotations

import inspect
import math
from typing import Any

import gradio as gr
from gradio import processing_utils
from gradio.exceptions import InvalidPathError

from .errors import refused

SHOWN_VALUE_CHARS = 40  # how much of a refused value the sentence repeats


class CheckedBlocks(gr.Blocks):
    """gr.Blocks whose events refuse an input Gradio cannot take in one sentence naming it."""

    async def preprocess_data(
        self, block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False
    ) -> Any:
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except (gr.Error, ValueError, TypeError) as exc:  # ValueError: Gradio's own kinds
            sentence = await _input_problem(block_fn, inputs, explicit_call)
            raise refused(sentence or _first_line(exc)) from None


async def _input_problem(block_fn: Any, inputs: list[Any], explicit_call: bool) -> str | None:
    """Which input Gradio refused, found by preparing each alone as Gradio does, and why, in
    one sentence; None when no single input is at fault (too few were sent, say)."""
    for index, (block, value) in enumerate(zip(block_fn.inputs, inputs, strict=False)):
        try:
            cached = await processing_utils.async_move_files_to_cache(
                value, block, check_in_upload_folder=not explicit_call
            )
            model = getattr(block, "data_model", None)
            if model is not None and cached is not None:
                cached = model.model_validate(cached, context={"validate_meta": True})
            if block_fn.preprocess:
                block.preprocess(cached)
        except Exception as exc:  # the failure Gradio met
            return _sentence(_input_name(block_fn, index, block), block, value, exc)
    return None


def _sentence(name: str, block: Any, value: Any, exc: Exception) -> str:
    shown = _shown(value)
    if isinstance(exc, InvalidPathError):
        return (
            f"{name} names a file that was not uploaded to Loupe; upload it first "
            "(gradio_client's handle_file does)."
        )
    low, high = getattr(block, "minimum", None), getattr(block, "maximum", None)
    if isinstance(block, gr.Slider | gr.Number) and low is not None and high is not None:
        return f"{name} must be a number from {low:g} to {high:g}; got {shown}."
    if isinstance(block, gr.Dropdown | gr.Radio):
        choices = ", ".join(repr(choice) for _, choice in block.choices)
        return f"{name} must be one of {choices}; got {shown}."
    return f"{name} cannot take {shown} ({_first_line(exc)})."


def _input_name(block_fn: Any, index: int, block: Any) -> str:
    """The input as a caller knows it ("The temperature input"): by the handler's parameter,
    which gradio_client takes as a keyword, else by the component's label."""
    try:
        parameters = list(inspect.signature(block_fn.fn).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    named = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if index < len(named):
        return f"The {named[index].name} input"
    return f"The {block.label} input" if block.label else f"Input {index + 1}"


def _first_line(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, gr.Error) else str(exc)
    return (str(text).strip().splitlines() or [type(exc).__name__])[0]


def whole_number(value: Any, name: str, least: int) -> int:
    """An API argument that must be a whole number of at least `least` (Gradio checks none for
    gr.api endpoints); a refusal naming it otherwise."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number != int(number) or number < least:
        shown = _shown(value)
        raise refused(f"The {name} input must be a whole number of at least {least}; got {shown}.")
    return int(number)


def _shown(value: Any) -> str:
    """A value as a refusal repeats it: its repr, cut short."""
    shown = repr(value)
    return shown if len(shown) <= SHOWN_VALUE_CHARS else shown[: SHOWN_VALUE_CHARS - 1] + "…"
