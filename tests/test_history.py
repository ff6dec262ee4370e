"""Conversations in SQLite on disk, with their files, and their exports."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from markdown_it import MarkdownIt

from app.history import Attachment, History, StoredMessage, export_json, export_markdown


def _user(text: str, *files: Path) -> StoredMessage:
    return StoredMessage("user", text, tuple(Attachment("image", str(f), f.name) for f in files))


def test_a_conversation_with_an_image_survives_reopening(tmp_path: Path, image_file: Path):
    history = History(tmp_path / "data")
    conversation_id = history.create()
    history.append(conversation_id, _user("What is in this picture?", image_file))
    history.append(conversation_id, StoredMessage("assistant", "A cat.", thinking="Fur, whiskers."))
    image_file.unlink()  # the upload goes away; the kept copy must not

    reopened = History(tmp_path / "data").get(conversation_id)
    assert reopened.title == "What is in this picture?"
    question, answer = reopened.messages
    [kept] = question.attachments
    assert Path(kept.path).is_file() and kept.name == "photo.png"
    assert Path(kept.path).is_relative_to(tmp_path / "data" / "files")
    assert (answer.text, answer.thinking, answer.status) == ("A cat.", "Fur, whiskers.", "complete")


def test_the_database_is_in_wal_mode(tmp_path: Path):
    History(tmp_path)
    with sqlite3.connect(tmp_path / "conversations.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_truncate_and_edit_forget_what_came_after(tmp_path: Path):
    history = History(tmp_path)
    conversation_id = history.create()
    for text in ("one", "two", "three", "four"):
        role = "user" if text in ("one", "three") else "assistant"
        history.append(conversation_id, StoredMessage(role, text))
    history.truncate(conversation_id, 3)
    assert [m.text for m in history.get(conversation_id).messages] == ["one", "two", "three"]
    history.edit_text(conversation_id, 0, "uno")
    assert [m.text for m in history.get(conversation_id).messages] == ["uno"]
    history.append(conversation_id, StoredMessage("assistant", "dos"))
    assert [m.text for m in history.get(conversation_id).messages] == ["uno", "dos"]


def test_list_rename_and_delete(tmp_path: Path, image_file: Path):
    history = History(tmp_path)
    first, second = history.create(), history.create()
    history.append(first, _user("about a photo", image_file))  # now the most recent
    assert [row[:2] for row in history.list()] == [(first, "about a photo"), (second, "New chat")]
    history.rename(second, "  Holiday plans ")
    assert {id: title for id, title, _ in history.list()}[second] == "Holiday plans"
    kept = Path(history.get(first).messages[0].attachments[0].path)
    history.delete(first)
    assert history.get(first) is None and not kept.exists()
    assert [row[:2] for row in history.list()] == [(second, "Holiday plans")]


def test_exports_carry_the_text_and_reference_the_images(tmp_path: Path, image_file: Path):
    history = History(tmp_path)
    conversation_id = history.create()
    history.append(conversation_id, _user("Describe it", image_file))
    history.append(conversation_id, StoredMessage("assistant", "Noise.", status="interrupted"))
    conversation = history.get(conversation_id)
    image = conversation.messages[0].attachments[0].path

    markdown = export_markdown(conversation)
    assert markdown.startswith("# Describe it\n")
    assert f"![photo.png]({Path(image).as_uri()})" in markdown
    assert "## Loupe\n\nNoise. *(stopped)*" in markdown  # the word the page shows

    data = json.loads(export_json(conversation))
    assert data["id"] == conversation_id
    assert data["messages"][0]["attachments"][0]["path"] == image
    assert data["messages"][1]["status"] == "interrupted"

    markdown_file, json_file = history.export(conversation_id)
    assert markdown_file.read_text() == markdown and json.loads(json_file.read_text()) == data


def test_a_title_made_from_the_first_message_follows_its_edit(tmp_path: Path):
    history = History(tmp_path)
    made, chosen = history.create(), history.create()
    for conversation_id in (made, chosen):
        history.append(conversation_id, StoredMessage("user", "Waht is a loupe?"))
        history.append(conversation_id, StoredMessage("assistant", "A magnifier."))
    history.rename(chosen, "Lenses")
    for conversation_id in (made, chosen):
        history.edit_text(conversation_id, 0, "What is a loupe?")
    titles = {conversation_id: title for conversation_id, title, _ in history.list()}
    assert titles == {made: "What is a loupe?", chosen: "Lenses"}


def test_conversations_are_grouped_by_the_day_they_were_last_used():
    from datetime import date, datetime

    from app.page.side_list import grouped

    def at(day: int, hour: int = 12) -> float:
        return datetime(2026, 11, day, hour).timestamp()

    rows = [
        ("a", "Today's", at(29, 9)),
        ("b", "Yesterday's", at(28)),
        ("c", "Same", at(25)),
        ("d", "Same", at(25)),
        ("e", "Old", at(1)),
    ]
    groups = grouped(rows, today=date(2026, 11, 29))
    assert groups["Today"] == [("Today's", "a")]
    assert groups["Yesterday"] == [("Yesterday's", "b")]
    assert groups["Previous 7 days"] == [
        ("Same · 25 Nov 12:00", "c"),
        ("Same · 25 Nov 12:00 (2)", "d"),
    ]
    assert groups["Earlier"] == [("Old", "e")]


def test_a_recordings_caption_stays_out_of_the_persons_words_in_a_markdown_viewer(
    tmp_path: Path, spoken_question: Path
):
    history = History(tmp_path)
    conversation_id = history.create()
    caption = "🎤 Heard: “What is a loupe?”"
    heard = Attachment("audio", str(spoken_question), "question.wav", caption)
    history.append(conversation_id, StoredMessage("user", "And say it briefly.", (heard,)))
    html = MarkdownIt().render(export_markdown(history.get(conversation_id)))
    assert "<blockquote>\n<p>🎤 Heard: “What is a loupe?”</p>\n</blockquote>" in html
    assert "<p>And say it briefly.</p>" in html  # a paragraph of its own, not in the quote
