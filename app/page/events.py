"""The page's events, wired in one place: each region's components (layout.py) to the chat's
events (chat_events.py), the side list's (side_list.py) and the composer's tools'. The argument
sets are built once, as Gradio's ChatInterface builds them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from .box import with_file
from .chat_events import ChatHandlers
from .desktop import ScreenRecorder, capture_screen
from .owners import for_user, user_of
from .regions import PageParts
from .scripts import SET_ADDRESS_JS, SHOW_HELP_JS, START_WEBCAM_JS

STATUS_REFRESH_S = 1.0


@dataclass
class Outputs:
    """The argument sets the events share."""

    listing: list  # the side list's date groups, and its search box
    reply: list  # what a reply streams: chat, box, id, status line, side list, title
    opened: list  # what opening a conversation changes
    fresh_chat: list  # what a new chat empties


def wire_page(page: gr.Blocks, handlers: ChatHandlers, parts: PageParts) -> None:
    """Every event of the chat page."""
    side, tools = parts.side, parts.composer
    conversation_id, chatbot, box = parts.conversation_id, parts.chatbot, tools.box
    listing = [*side.groups, side.search]
    reply_outputs = [chatbot, box, conversation_id, parts.status, *listing, side.title]
    opened = [chatbot, conversation_id, side.title, parts.alt_text, side.exported]
    fresh_chat = [*opened, box, *listing]
    outputs = Outputs(listing, reply_outputs, opened, fresh_chat)
    replies = _wire_replies(handlers, parts, outputs)
    _wire_side_list(handlers, parts, outputs, replies)
    _wire_tools(handlers, parts)
    page.load(
        handlers.conversations.open_address,
        None,
        [*opened, *side.groups],
        api_visibility="private",
        show_progress="hidden",
    ).then(None, parts.conversation_id, js=SET_ADDRESS_JS)  # a gone one's address is cleared
    timer = gr.Timer(STATUS_REFRESH_S)
    gr.on(
        [page.load, timer.tick],
        handlers.refresh,
        None,
        [parts.banner, parts.status],
        api_visibility="private",
        show_progress="hidden",
    )


def _wire_replies(handlers: ChatHandlers, parts: PageParts, outputs: Outputs) -> list:
    """Send, answer again, edit, describe and Stop; the events a reply runs in."""
    tools, chatbot, box = parts.composer, parts.chatbot, parts.composer.box
    conversation_id, reply_outputs = parts.conversation_id, outputs.reply
    sent = box.submit(
        for_user(handlers.send),
        [box, conversation_id, tools.mode, parts.voice_route, *parts.settings.values()],
        [*reply_outputs, parts.alt_text],
        api_visibility="private",
    )
    regenerated = chatbot.retry(
        for_user(handlers.regenerate),
        [conversation_id, *parts.settings.values()],
        reply_outputs,
        api_name="page_regenerate",
        api_visibility="private",
    )
    edited = chatbot.edit(
        edit_for_user(handlers),
        [conversation_id, *parts.settings.values()],
        reply_outputs,
        api_name="page_edit",
        api_visibility="private",
    )
    described = tools.describe.click(
        for_user(handlers.describe_page),
        [box, conversation_id, tools.mode, *parts.settings.values()],
        [*reply_outputs, parts.alt_text],
        api_visibility="private",
    )
    # Stop asks the model to stop; the reply then ends by itself, shown and kept as stopped.
    box.stop(for_user(handlers.stop), conversation_id, api_visibility="private", queue=False)
    # Leaving a conversation while its reply is written ends that reply (kept as stopped).
    replies = [sent, regenerated, edited, described]
    # Reading aloud happens in the browser (its speech synthesis works offline).
    tools.read_aloud.click(None, js="() => window.loupe.readLatest()")
    tools.stop_reading.click(None, js="() => window.loupe.stopReading()")
    tools.shortcuts.click(None, js=f"() => {SHOW_HELP_JS}")
    chatbot.example_select(example_into_box, None, box, api_visibility="private")
    return replies


def _wire_side_list(
    handlers: ChatHandlers, parts: PageParts, outputs: Outputs, replies: list
) -> None:
    """Opening, searching, starting, renaming, deleting and exporting conversations; the page's
    address follows the open one. Leaving a conversation ends its reply (kept as stopped)."""
    side, chatbot, conversation_id = parts.side, parts.chatbot, parts.conversation_id
    conversations = handlers.conversations
    listing, opened, fresh_chat = outputs.listing, outputs.opened, outputs.fresh_chat
    for group in side.groups:
        group.input(
            for_user(conversations.open),
            [group, side.search],
            [*opened, *side.groups],
            api_visibility="private",
            cancels=replies,
            show_progress="hidden",  # instant; and the live region says Generating on progress
        )
    # On change, not input: Gradio's text box sends input for typed keys only, so Backspace,
    # Delete and paste left the list filtered by what the field no longer held.
    side.search.change(
        for_user(conversations.groups),
        [conversation_id, side.search],
        side.groups,
        api_visibility="private",
        show_progress="hidden",
        trigger_mode="always_last",
    )
    # The chat's own trash icon clears the view: it starts a new chat, as New chat does, so
    # the model no longer sees what was cleared (the conversation stays in the list).
    gr.on(
        [side.new_chat.click, chatbot.clear],
        for_user(conversations.new_chat),
        None,
        fresh_chat,
        api_visibility="private",
        cancels=replies,
        show_progress="hidden",
    )
    side.rename.click(
        for_user(conversations.rename),
        [conversation_id, side.title],
        listing,
        api_visibility="private",
    )
    side.delete.click(
        for_user(conversations.ask_to_delete),
        conversation_id,
        [side.confirm_row, side.confirm_text],
        api_visibility="private",
    )
    side.confirm.click(
        for_user(conversations.delete),
        conversation_id,
        [*fresh_chat, side.confirm_row],
        api_visibility="private",
        cancels=replies,
        show_progress="hidden",
    )
    _shows(side.cancel, side.confirm_row, False)
    side.export.click(
        for_user(conversations.export_files),
        conversation_id,
        side.exported,
        api_visibility="private",
    )
    # The address names the open conversation, so a reload (or a bookmark) opens it again.
    conversation_id.change(None, conversation_id, js=SET_ADDRESS_JS)


def _wire_tools(handlers: ChatHandlers, parts: PageParts) -> None:
    """The composer's tools: Settings, the camera, voice, screen capture and push-to-talk."""
    tools, box = parts.composer, parts.composer.box
    open_settings = lambda: gr.Sidebar(open=True)  # noqa: E731
    tools.settings_button.click(
        open_settings, None, parts.settings_panel, queue=False, api_visibility="private"
    )
    # Camera opens the camera, and closes it when it is open (so does its Close button); the
    # page's script turns the camera off as the panel closes.
    camera_open = gr.State(False)
    tools.camera_button.click(
        lambda shown: (gr.update(visible=not shown), not shown),
        camera_open,
        [tools.camera_panel, camera_open],
        queue=False,
        api_visibility="private",
    ).then(None, js=START_WEBCAM_JS)
    tools.close_camera.click(
        lambda: (gr.update(visible=False), False),
        None,
        [tools.camera_panel, camera_open],
        queue=False,
        api_visibility="private",
    )
    _shows(tools.voice_button, tools.voice_panel, True)
    tools.webcam.input(
        attach_snapshot, [box, tools.webcam], [box, tools.webcam], api_visibility="private"
    ).then(None, js=START_WEBCAM_JS)
    tools.record_screen.click(
        ScreenRecorder().toggle, box, [box, tools.record_screen], api_visibility="private"
    )
    tools.capture.click(
        functools.partial(capture_screen, max_image_mp=handlers.config.limits.max_image_mp),
        box,
        box,
        api_visibility="private",
    )
    tools.microphone.stop_recording(
        handlers.voice.take_recording,
        [tools.microphone, box, parts.voice_route],
        [box, tools.microphone],
        api_visibility="private",
    )
    tools.talk_down.click(handlers.voice.start_local, api_visibility="private")
    tools.talk_up.click(
        handlers.voice.stop_local, [box, parts.voice_route], box, api_visibility="private"
    )


def _shows(button: gr.Button, panel: gr.components.Component, shown: bool) -> None:
    """`button` shows (or hides) `panel`: at once, and not an API endpoint."""
    button.click(
        lambda: gr.update(visible=shown), None, panel, queue=False, api_visibility="private"
    )


def edit_for_user(handlers: ChatHandlers) -> Callable[..., Iterator[tuple]]:
    """The chat's edit event: for_user's, with the edit's data (which Gradio passes to a
    parameter annotated gr.EditData) before the settings."""

    def edited(
        request: gr.Request, conversation_id: str, edit: gr.EditData, *settings: Any
    ) -> Iterator[tuple]:
        yield from handlers.edit(conversation_id, edit, *settings, user=user_of(request))

    return edited


def example_into_box(selected: gr.SelectData) -> dict:
    """An example picked in the empty chat goes into the message box, to send or change."""
    example = selected.value
    files = [item["path"] if isinstance(item, dict) else item for item in example.get("files", [])]
    return {"text": example.get("text", ""), "files": files}


def attach_snapshot(value: dict | None, snapshot: str | None) -> tuple:
    """A webcam snapshot joins the message box, and the webcam is emptied for the next."""
    return with_file(value, snapshot), None
