"""Conversations on disk: SQLite in WAL mode, one commit per message, files copied alongside."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from model import ImageDetail

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    system_prompt TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    thinking TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'complete',
    created REAL NOT NULL,
    image_detail TEXT NOT NULL DEFAULT '',
    UNIQUE (conversation_id, position)
);
CREATE TABLE IF NOT EXISTS attachments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    file TEXT NOT NULL,
    name TEXT NOT NULL,
    caption TEXT NOT NULL DEFAULT ''
);
"""
NEW_TITLE = "New chat"
TITLE_CHARS = 60
# How the page and the exports mark a reply that was stopped (or cut off) before its end.
STOPPED = "*(stopped)*"
# The owner of every conversation when Loupe runs without --auth (and of those kept before
# conversations had owners); with --auth, each login's user name owns its own.
LOCAL_USER = ""


@dataclass(frozen=True)
class Attachment:
    """A file kept with a message; `path` is absolute, inside the data folder."""

    kind: str  # "image", "audio", "pdf", "video" or "text"
    path: str
    name: str
    # For audio sent as audio (and a video's soundtrack): what the speech recogniser heard; for
    # a PDF: the pages the model reads ("Pages 1-10 of 30", see app/intake/pdf_pages.py).
    caption: str = ""


@dataclass(frozen=True)
class StoredMessage:
    role: str  # "user" or "assistant"
    text: str
    attachments: tuple[Attachment, ...] = ()
    thinking: str = ""
    status: str = "complete"  # or "interrupted": stopped before it was finished
    image_detail: ImageDetail | None = None  # an answer's: the image budget it was made with


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    created: float
    updated: float
    messages: tuple[StoredMessage, ...] = field(default_factory=tuple)
    # The system prompt it was started with, kept at its first reply (None before, and for
    # conversations kept before Loupe remembered it, until their next reply).
    system_prompt: str | None = None


class History:
    """All conversations of this Loupe, in `data_dir` (conversations.db and files/). Each has
    an owner: `create` gives it one, and `get` and `list` show a conversation to its owner
    only, so whoever changes one by its id has found it through them first."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.files_dir = self.data_dir / "files"
        self.exports_dir = self.data_dir / "exports"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.data_dir / "conversations.db", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._add_missing_columns()

    def create(self, title: str = NEW_TITLE, owner: str = LOCAL_USER) -> str:
        conversation_id = uuid.uuid4().hex[:12]
        now = time.time()
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO conversations (id, title, created, updated, owner)"
                " VALUES (?, ?, ?, ?, ?)",
                (conversation_id, title, now, now, owner),
            )
        return conversation_id

    def append(
        self,
        conversation_id: str,
        message: StoredMessage,
    ) -> None:
        """Add a message at the end; its files are copied into the data folder. One commit."""
        copies = [self._keep(conversation_id, attachment) for attachment in message.attachments]
        now = time.time()
        with self._lock, self._db:
            (position,) = self._db.execute(
                "SELECT COUNT(*) FROM messages WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            cursor = self._db.execute(
                "INSERT INTO messages (conversation_id, position, role, text, thinking, status,"
                " created, image_detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    position,
                    message.role,
                    message.text,
                    message.thinking,
                    message.status,
                    now,
                    json.dumps(asdict(message.image_detail)) if message.image_detail else "",
                ),
            )
            self._db.executemany(
                "INSERT INTO attachments (message_id, kind, file, name, caption)"
                " VALUES (?, ?, ?, ?, ?)",
                [(cursor.lastrowid, a.kind, a.path, a.name, a.caption) for a in copies],
            )
            if position == 0 and message.role == "user" and message.text.strip():
                self._db.execute(
                    "UPDATE conversations SET title = ? WHERE id = ? AND title = ?",
                    (_title(message.text), conversation_id, NEW_TITLE),
                )
            self._db.execute(
                "UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id)
            )

    def truncate(self, conversation_id: str, keep: int) -> None:
        """Forget every message from position `keep` on (regenerate, edit and resend)."""
        with self._lock, self._db:
            self._db.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND position >= ?",
                (conversation_id, keep),
            )

    def edit_text(self, conversation_id: str, position: int, text: str) -> None:
        """New text for one message; every later message is forgotten (it answered the old).

        A title that was made from the first message follows its new text; one the person
        chose stays."""
        with self._lock, self._db:
            (old,) = self._db.execute(
                "SELECT text FROM messages WHERE conversation_id = ? AND position = ?",
                (conversation_id, position),
            ).fetchone() or ("",)
            if position == 0 and text.strip():
                self._db.execute(
                    "UPDATE conversations SET title = ? WHERE id = ? AND title IN (?, ?)",
                    (_title(text), conversation_id, _title(old), NEW_TITLE),
                )
            self._db.execute(
                "UPDATE messages SET text = ? WHERE conversation_id = ? AND position = ?",
                (text, conversation_id, position),
            )
            self._db.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND position > ?",
                (conversation_id, position),
            )

    def export(self, conversation_id: str, owner: str = LOCAL_USER) -> tuple[Path, Path]:
        """Write `owner`'s conversation as Markdown and JSON under exports/; the two files."""
        conversation = self.get(conversation_id, owner)
        folder = self.exports_dir / conversation_id
        folder.mkdir(parents=True, exist_ok=True)
        stem = "".join(c if c.isalnum() or c in " -_" else "_" for c in conversation.title)
        markdown = folder / f"{stem.strip() or 'conversation'}.md"
        json_file = markdown.with_suffix(".json")
        markdown.write_text(export_markdown(conversation))
        json_file.write_text(export_json(conversation))
        return markdown, json_file

    def get(self, conversation_id: str, owner: str = LOCAL_USER) -> Conversation | None:
        """The conversation, or None when there is none of this id that `owner` owns."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, title, created, updated, system_prompt FROM conversations"
                " WHERE id = ? AND owner = ?",
                (conversation_id, owner),
            ).fetchone()
            if row is None:
                return None
            messages = self._db.execute(
                "SELECT id, role, text, thinking, status, image_detail FROM messages"
                " WHERE conversation_id = ? ORDER BY position",
                (conversation_id,),
            ).fetchall()
            files = self._db.execute(
                "SELECT a.message_id, a.kind, a.file, a.name, a.caption FROM attachments a"
                " JOIN messages m ON m.id = a.message_id WHERE m.conversation_id = ?"
                " ORDER BY a.id",
                (conversation_id,),
            ).fetchall()
        by_message: dict[int, list[Attachment]] = {}
        for message_id, kind, file, name, caption in files:
            path = str(self.files_dir / file)
            by_message.setdefault(message_id, []).append(Attachment(kind, path, name, caption))
        stored = tuple(
            StoredMessage(
                role,
                text,
                tuple(by_message.get(message_id, ())),
                thinking,
                status,
                ImageDetail(**json.loads(detail)) if detail else None,
            )
            for message_id, role, text, thinking, status, detail in messages
        )
        conversation_id, title, created, updated, system_prompt = row
        return Conversation(conversation_id, title, created, updated, stored, system_prompt)

    def list(self, query: str = "", owner: str = LOCAL_USER) -> list[tuple[str, str, float]]:
        """(id, title, last used) of every conversation of `owner`, the most recently used
        first; with a `query`, only those whose title or messages hold it (ASCII letters in any
        case)."""
        sql = "SELECT id, title, updated FROM conversations c WHERE c.owner = ?"
        parameters: tuple[str, ...] = (owner,)
        if query.strip():
            pattern = "%" + "".join(f"\\{c}" if c in "%_\\" else c for c in query.strip()) + "%"
            sql += (
                " AND (c.title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m"
                " WHERE m.conversation_id = c.id AND m.text LIKE ? ESCAPE '\\'))"
            )
            parameters = (owner, pattern, pattern)
        with self._lock:
            return self._db.execute(f"{sql} ORDER BY updated DESC", parameters).fetchall()

    def rename(self, conversation_id: str, title: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "UPDATE conversations SET title = ? WHERE id = ?",
                (title.strip() or NEW_TITLE, conversation_id),
            )

    def keep_system_prompt(self, conversation_id: str, system_prompt: str) -> str:
        """The conversation's system prompt: the one it already keeps, else `system_prompt`,
        kept from now on."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE conversations SET system_prompt = ? WHERE id = ? AND system_prompt IS NULL",
                (system_prompt, conversation_id),
            )
            (kept,) = self._db.execute(
                "SELECT system_prompt FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
        return kept

    def delete(self, conversation_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
        shutil.rmtree(self.files_dir / conversation_id, ignore_errors=True)

    def _add_missing_columns(self) -> None:
        """Columns added since a data folder was made: added to its database, empty (so the
        conversations kept before owners existed belong to the local user, LOCAL_USER)."""
        added = (
            ("messages", "image_detail", "TEXT NOT NULL DEFAULT ''"),
            ("conversations", "owner", "TEXT NOT NULL DEFAULT ''"),
            ("conversations", "system_prompt", "TEXT"),
        )
        with self._lock, self._db:
            for table, column, declaration in added:
                columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column in columns:
                    continue
                try:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
                except sqlite3.OperationalError as exc:  # another Loupe added it meanwhile
                    if "duplicate column" not in str(exc):
                        raise
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS conversations_by_owner"
                " ON conversations (owner, updated)"
            )

    def _keep(self, conversation_id: str, attachment: Attachment) -> Attachment:
        """A copy of the file in this conversation's folder; stored relative to files/."""
        folder = self.files_dir / conversation_id
        folder.mkdir(exist_ok=True)
        target = folder / f"{uuid.uuid4().hex[:12]}{Path(attachment.path).suffix.lower()}"
        shutil.copyfile(attachment.path, target)
        return Attachment(
            attachment.kind,
            str(target.relative_to(self.files_dir)),
            attachment.name,
            attachment.caption,
        )


def export_markdown(conversation: Conversation) -> str:
    """The conversation as Markdown; files are linked by their path in the data folder."""
    lines = [f"# {conversation.title}", ""]
    if conversation.system_prompt:  # a quote of its own, every line of it
        quoted = [f"> {line}".rstrip() for line in conversation.system_prompt.splitlines()]
        lines += ["> **System prompt**", ">", *quoted, ""]
    for message in conversation.messages:
        lines.append("## You" if message.role == "user" else "## Loupe")
        lines.append("")
        for attachment in message.attachments:
            if attachment.kind == "image":
                lines.append(f"![{attachment.name}]({Path(attachment.path).as_uri()})")
            elif attachment.kind == "pdf":
                lines.append(f"[📄 {attachment.name}]({Path(attachment.path).as_uri()})")
            elif attachment.kind == "video":
                lines.append(f"[🎬 {attachment.name}]({Path(attachment.path).as_uri()})")
            elif attachment.kind == "text":
                lines.append(f"[📝 {attachment.name}]({Path(attachment.path).as_uri()})")
            else:
                lines.append(f"[🔊 {attachment.name}]({Path(attachment.path).as_uri()})")
            if attachment.caption:  # a quote of its own: the blank line ends it
                lines += [f"> {attachment.caption}", ""]
        if message.thinking:
            lines += [
                "<details><summary>Thinking</summary>",
                "",
                message.thinking,
                "",
                "</details>",
            ]
        stopped = message.status == "interrupted"
        lines += [f"{message.text} {STOPPED}".strip() if stopped else message.text, ""]
    return "\n".join(lines)


def export_json(conversation: Conversation) -> str:
    """The conversation as JSON; files are referenced by their absolute path."""
    return json.dumps(asdict(conversation), indent=2, ensure_ascii=False)


def _title(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"
