"""The side list of conversations, as a chat app has it: grouped by date (same titles told
apart), searchable by title and text, with open, rename, delete (after a confirmation), export,
and an address (`?c=ID`) that opens a conversation again after a reload."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from typing import Any

import gradio as gr

from ..history import LOCAL_USER, Conversation, History
from .display import shown_conversation
from .errors import refused
from .owners import user_of

GROUPS = ("Today", "Yesterday", "Previous 7 days", "Earlier")
ADDRESS_PARAMETER = "c"  # ?c=ID in the page's address opens that conversation
# An address naming no conversation of this person's (deleted, or never theirs: not told apart).
GONE = "The conversation this address named is no longer here (it was deleted); this is a new chat."


def group_of(updated: float, today: date) -> str:
    """The date group of a conversation last used at `updated` (seconds since the epoch)."""
    day = datetime.fromtimestamp(updated).date()
    if day >= today:
        return "Today"
    if day == today - timedelta(days=1):
        return "Yesterday"
    if day > today - timedelta(days=7):
        return "Previous 7 days"
    return "Earlier"


def grouped(
    rows: list[tuple[str, str, float]], today: date | None = None
) -> dict[str, list[tuple[str, str]]]:
    """(id, title, updated) rows, most recent first -> each group's (label, id) choices.

    Conversations that share a title are told apart by when they were last used, so a person
    (and a screen reader) can tell which "New chat" or "Alt text: image.png" is which.
    """
    today = today or date.today()
    repeated = Counter(title for _, title, _ in rows)
    groups: dict[str, list[tuple[str, str]]] = {name: [] for name in GROUPS}
    labels: Counter[str] = Counter()
    for conversation_id, title, updated in rows:
        label = title
        if repeated[title] > 1:
            label = f"{title} · {datetime.fromtimestamp(updated):%d %b %H:%M}"
        labels[label] += 1
        if labels[label] > 1:  # the same title in the same minute
            label = f"{label} ({labels[label]})"
        groups[group_of(updated, today)].append((label, conversation_id))
    return groups


def hidden_alt_text() -> Any:
    """The alt-text box emptied and hidden: it belongs to the description it came from."""
    return gr.update(value="", visible=False)


class Conversations:
    """What the side list's events call. The list is one radio group per date group (GROUPS),
    so its outputs are always those groups in that order. Each acts for `user`, the logged-in
    user name, and sees only that user's conversations."""

    def __init__(self, history: History):
        self.history = history

    def groups(self, selected: str | None, query: str = "", user: str = LOCAL_USER) -> tuple:
        """The date groups' radios: choices, the open conversation checked, empty ones hidden."""
        updates = []
        for choices in grouped(self.history.list(query, owner=user)).values():
            ids = [conversation_id for _, conversation_id in choices]
            value = selected if selected in ids else None
            updates.append(gr.update(choices=choices, value=value, visible=bool(choices)))
        return tuple(updates)

    def listing(self, selected: str | None, user: str = LOCAL_USER) -> tuple:
        """The groups, unfiltered, and the search box emptied: after a new message, a rename or
        a delete, the whole list shows where that conversation now is."""
        return (*self.groups(selected, user=user), "")

    def open(self, conversation_id: str | None, query: str = "", user: str = LOCAL_USER) -> tuple:
        """A conversation picked in the list: (chat, id, title, alt-text box, exports, *groups);
        the alt text and exports of the one open before go."""
        return self._opened(self.history.get(conversation_id or "", user), query, user)

    def _opened(self, conversation: Conversation | None, query: str, user: str) -> tuple:
        if conversation is None:
            return [], "", "", hidden_alt_text(), None, *self.groups(None, query, user=user)
        shown = shown_conversation(conversation)[0]
        groups = self.groups(conversation.id, query, user=user)
        return shown, conversation.id, conversation.title, hidden_alt_text(), None, *groups

    def open_address(self, request: gr.Request) -> tuple:
        """On page load: the conversation the address names (`?c=ID`), else a fresh chat (and,
        for an address whose conversation is gone, a word that it is)."""
        named, user = request.query_params.get(ADDRESS_PARAMETER), user_of(request)
        conversation = self.history.get(named, user) if named else None
        if named and conversation is None:
            gr.Warning(GONE)
        return self._opened(conversation, "", user)

    def new_chat(self, user: str = LOCAL_USER) -> tuple:
        """(chat, id, title, alt-text box, exports, message box, *listing) for a fresh chat; a
        draft in the message box goes too, as a new chat starts empty."""
        return [], "", "", hidden_alt_text(), None, None, *self.listing(None, user=user)

    def rename(self, conversation_id: str, title: str, user: str = LOCAL_USER) -> tuple:
        if self.history.get(conversation_id or "", user):
            self.history.rename(conversation_id, title)
        return self.listing(conversation_id, user=user)

    def ask_to_delete(self, conversation_id: str, user: str = LOCAL_USER) -> tuple:
        """Delete pressed: (the confirmation row shown, what it asks)."""
        conversation = self.history.get(conversation_id or "", user)
        if conversation is None:
            raise refused("Open a conversation to delete it.")
        question = f"Delete “{conversation.title}” and its files? This cannot be undone."
        return gr.update(visible=True), question

    def delete(self, conversation_id: str, user: str = LOCAL_USER) -> tuple:
        """Delete confirmed: new_chat's outputs, then the confirmation row hidden."""
        if self.history.get(conversation_id or "", user):
            self.history.delete(conversation_id)
        return *self.new_chat(user=user), gr.update(visible=False)

    def export_files(self, conversation_id: str, user: str = LOCAL_USER) -> list[str]:
        """Markdown and JSON copies of the conversation, for download."""
        conversation = self.history.get(conversation_id or "", user)
        if conversation is None:
            raise refused("Open or start a conversation to export it.")
        return [str(path) for path in self.history.export(conversation.id, user)]
