"""The page's chat flows on the real engine: send, regenerate, edit, stop, reopen, delete."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import gradio as gr
import pytest

from app.config import AppConfig
from app.history import History, StoredMessage, export_json, export_markdown
from app.page.chat_events import ChatHandlers
from app.page.display import shown_conversation
from app.page.voice import SEND_AUDIO, Voice
from bench.samples import photo

# The settings panel: system prompt, temperature, top-p, top-k, max new tokens, thinking, detail.
SETTINGS = ("", 1.0, 0.95, 64, 24, False, 280)
LONG = ("", 1.0, 0.95, 64, 4000, False, 280)


@pytest.fixture
def handlers(engine, recognizer, tmp_path: Path) -> ChatHandlers:
    return ChatHandlers(engine, Voice(recognizer), History(tmp_path / "data"), AppConfig())


def _send(handlers: ChatHandlers, value: dict, conversation_id: str = "", settings=SETTINGS):
    return list(handlers.respond(value, conversation_id, SEND_AUDIO, *settings))


def test_send_streams_into_the_chat_and_keeps_the_conversation(
    handlers: ChatHandlers, image_file: Path
):
    updates = _send(handlers, {"text": "What is this?", "files": [str(image_file)]})
    assert len(updates) >= 3  # shown with the question, at least once more as it grew, then done
    assert updates[0][-1] == "What is this?"  # the title box names the new conversation
    shown, _, conversation_id, *_ = updates[-2]
    # The box empties as the reply starts, then is left alone: what is typed meanwhile stays.
    assert updates[0][1] is None and conversation_id
    assert all(update[1] == gr.skip() for update in updates[1:])
    assert shown[0]["content"]["path"].endswith(".png") and shown[1]["content"] == "What is this?"
    assert shown[-1]["role"] == "assistant"
    _, _, _, status, today, *_ = updates[-1]
    assert "tokens/s" in status
    assert today["choices"] == [("What is this?", conversation_id)]
    question, answer = handlers.history.get(conversation_id).messages
    assert len(question.attachments) == 1 and answer.status == "complete"
    assert shown[-1]["content"] == (answer.text or "…")  # "…" if only stop-like tokens came

    follow_up = _send(handlers, {"text": "And the colours?", "files": []}, conversation_id)
    assert follow_up[-1][2] == conversation_id
    assert len(handlers.history.get(conversation_id).messages) == 4


def test_an_unreadable_file_loses_nothing(handlers: ChatHandlers, tmp_path: Path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))  # a PNG's signature, then nothing
    value = {"text": "Read this", "files": [str(broken)]}
    [(shown, box, conversation_id, *_)] = _send(handlers, value)
    assert shown == gr.skip() and box == value and conversation_id == ""
    assert handlers.history.list() == []


def test_regenerate_replaces_the_last_answer(handlers: ChatHandlers):
    conversation_id = _send(handlers, {"text": "Tell me a story.", "files": []})[-1][2]
    before = handlers.history.get(conversation_id).messages
    updates = list(handlers.regenerate(conversation_id, *SETTINGS))
    after = handlers.history.get(conversation_id).messages
    assert len(updates) >= 2 and len(after) == len(before) == 2
    assert after[0] == before[0]
    assert after[1].text != before[1].text  # sampled afresh from random weights


def test_edit_resends_from_the_edited_message(handlers: ChatHandlers):
    conversation_id = _send(handlers, {"text": "First question", "files": []})[-1][2]
    _send(handlers, {"text": "Second question", "files": []}, conversation_id)
    # Chat entries: question, answer, question, answer; the person edits entry 0.
    edit = gr.EditData(
        None, {"index": 0, "previous_value": "First question", "value": "Better first question"}
    )
    list(handlers.edit(conversation_id, edit, *SETTINGS))
    messages = handlers.history.get(conversation_id).messages
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[0].text == "Better first question" and messages[1].status == "complete"


def test_stop_keeps_the_partial_answer_marked_interrupted(handlers: ChatHandlers):
    for _ in range(5):  # the random model may end a reply at once; then ask again
        updates = handlers.respond({"text": "Talk at length.", "files": []}, "", SEND_AUDIO, *LONG)
        seen = list(itertools.islice(updates, 4))
        if len(seen) == 4 and handlers.history.get(seen[-1][2]).messages[-1].role == "user":
            break  # four updates in and the answer is still being written
    shown, _, conversation_id, *_ = seen[-1]
    updates.close()  # what happens to the event when the page goes away mid-reply
    answer = handlers.history.get(conversation_id).messages[-1]
    assert answer.role == "assistant" and answer.status == "interrupted" and answer.text
    assert answer.text.startswith(shown[-1]["content"].rstrip("…"))
    reopened, opened_id, title, *_ = handlers.conversations.open(conversation_id)
    assert opened_id == conversation_id and title == "Talk at length."
    assert reopened[-1]["content"].endswith("*(stopped)*")


def test_stop_ends_the_reply_by_itself_marked_stopped(handlers: ChatHandlers):
    for _ in range(5):
        updates = handlers.respond({"text": "Talk at length.", "files": []}, "", SEND_AUDIO, *LONG)
        seen = list(itertools.islice(updates, 4))
        conversation_id = seen[-1][2]
        if len(seen) == 4 and handlers.history.get(conversation_id).messages[-1].role == "user":
            break
    handlers.stop(conversation_id)  # the page's Stop button
    rest = list(updates)  # the reply ends on its own within a decoding step or so
    final_chat = [update[0] for update in rest if update[0] != gr.skip()][-1]
    assert final_chat[-1]["content"].endswith("*(stopped)*")
    assert handlers.history.get(conversation_id).messages[-1].status == "interrupted"


def test_rename_delete_and_new_chat(handlers: ChatHandlers):
    conversation_id = _send(handlers, {"text": "Plans", "files": []})[-1][2]
    today, *_, search = handlers.conversations.rename(conversation_id, "Holiday plans")
    assert today["choices"] == [("Holiday plans", conversation_id)] and search == ""
    confirmation, question = handlers.conversations.ask_to_delete(conversation_id)
    assert confirmation["visible"] and question.startswith("Delete “Holiday plans” and its files?")
    assert handlers.history.get(conversation_id)  # nothing is deleted until it is confirmed
    shown, current, title, _, _, box, today, *_, confirmation = handlers.conversations.delete(
        conversation_id
    )
    assert (shown, current, title, box, today["choices"]) == ([], "", "", None, [])
    assert confirmation["visible"] is False and handlers.history.get(conversation_id) is None
    with pytest.raises(gr.Error, match="Open a conversation to delete it"):
        handlers.conversations.ask_to_delete("")


def test_new_chat_empties_the_message_box_too(handlers: ChatHandlers):
    _, _, _, _, exports, box, *_ = handlers.conversations.new_chat()
    assert exports is None  # the exports of the conversation before go too
    assert box is None  # a draft typed or attached for the old conversation does not carry over


def test_the_list_is_grouped_by_date_searchable_and_tells_same_titles_apart(
    handlers: ChatHandlers,
):
    history = handlers.history
    for title in ("Trip", "Trip", "Taxes"):
        conversation_id = history.create(title)
        history.append(conversation_id, StoredMessage("user", f"about {title.lower()} receipts"))
    today, yesterday, week, earlier = handlers.conversations.groups(None)
    labels = [label for label, _ in today["choices"]]
    assert labels[0] == "Taxes" and len(labels) == 3
    assert labels[1].startswith("Trip · ") and labels[1] != labels[2]  # same title, told apart
    assert not (yesterday["visible"] or week["visible"] or earlier["visible"])
    found, *_ = handlers.conversations.groups(None, "TAX")
    assert [label for label, _ in found["choices"]] == ["Taxes"]
    by_text, *_ = handlers.conversations.groups(None, "trip receipts")
    assert len(by_text["choices"]) == 2


def test_a_pasted_image_is_named_after_the_time_it_came(handlers: ChatHandlers, tmp_path: Path):
    pasted = tmp_path / "image.png"  # what the browser calls any image pasted from the clipboard
    photo().save(pasted)
    conversation_id = _send(handlers, {"text": "What is this?", "files": [str(pasted)]})[-1][2]
    [attachment] = handlers.history.get(conversation_id).messages[0].attachments
    assert re.fullmatch(r"Pasted image \d{4}-\d\d-\d\d \d\d-\d\d-\d\d\.png", attachment.name)


def test_a_conversation_keeps_the_system_prompt_it_started_with(
    handlers: ChatHandlers, tmp_path: Path
):
    sent_prompts = []
    model_messages = handlers.intake.model_messages

    def spied(conversation, system_prompt):  # what each request is built with
        sent_prompts.append(system_prompt)
        return model_messages(conversation, system_prompt)

    handlers.intake.model_messages = spied
    french = ("Answer in French.\nBe brief.", *SETTINGS[1:])
    first = _send(handlers, {"text": "Hello", "files": []}, settings=french)
    conversation_id = first[-1][2]
    shown = first[-2][0]
    assert shown[0]["metadata"]["title"] == "System prompt"  # collapsed, at the top
    assert shown[0]["content"] == "Answer in French.\nBe brief."
    # Settings changed since: this conversation keeps its own, a new one takes the new one.
    _send(handlers, {"text": "And now?", "files": []}, conversation_id, settings=SETTINGS)
    _send(handlers, {"text": "A new chat", "files": []}, settings=("Be terse.", *SETTINGS[1:]))
    assert sent_prompts == ["Answer in French.\nBe brief."] * 2 + ["Be terse."]

    reopened = History(tmp_path / "data").get(conversation_id)  # as after a restart
    assert reopened.system_prompt == "Answer in French.\nBe brief."
    assert reopened.title == "Hello"
    assert export_markdown(reopened).startswith(
        "# Hello\n\n> **System prompt**\n>\n> Answer in French.\n> Be brief.\n\n## You\n"
    )
    assert json.loads(export_json(reopened))["system_prompt"] == "Answer in French.\nBe brief."
    plain = _send(handlers, {"text": "No prompt", "files": []})[-1][2]
    assert handlers.history.get(plain).system_prompt == ""  # kept as none
    assert "System prompt" not in str(shown_conversation(handlers.history.get(plain))[0])
