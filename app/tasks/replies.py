"""The reply loop: a conversation or a standalone request sent to the engine, its reply read as
it grows (tasks.reply), and a conversation's answer kept. No Gradio: the page and the named API
draw and refuse what it yields."""

from __future__ import annotations

from collections.abc import Iterator

from model import BUSY, ChatRequest, Engine, GenerationOptions, QueueSlot, ReplyStream, Timing

from ..config import AppConfig
from ..history import LOCAL_USER, NEW_TITLE, Attachment, History, StoredMessage
from ..intake.message import Intake
from ..intake.probe import MediaError
from ..intake.speech import Speech
from .describe import AI_NOTICE, LEVELS, is_description, level_of, level_options, level_prompt
from .reply import Reply


class Replies:
    """Sends requests to the engine one queue place at a time, streams their replies, and keeps a
    conversation's answers in its history."""

    def __init__(self, engine: Engine, speech: Speech, history: History, config: AppConfig):
        self.engine = engine
        self.history = history
        self.config = config
        self.intake = Intake(config.limits, speech, is_description)
        self.last_timing: Timing | None = None  # the app's most recent reply, for the status line
        self._running: dict[str, ReplyStream] = {}  # conversation id -> the reply being written

    def queue_slot(self) -> QueueSlot:
        """A place in the engine's queue, taken before a request's files are decoded, so that
        a busy Loupe says so at once and decodes nothing; MediaError (busy) when it is full."""
        slot = self.engine.reserve()
        if slot is None:
            raise MediaError(BUSY)
        return slot

    def stream(
        self,
        request: ChatRequest,
        owner: str = "",
        prefix: str = "",
        slot: QueueSlot | None = None,
        left_out: int = 0,
    ) -> Iterator[Reply]:
        """Yields the growing reply, which starts with `prefix`; cancels the request if the
        consumer stops early. `slot` is the queue place reserved for it (see `queue_slot`);
        `left_out` the oldest messages already left out of the request (Intake.sent_turns).

        A reply with an `owner` (its conversation) can also be stopped with `stop(owner)`.
        """
        reply = Reply(answer=prefix, dropped=left_out)
        reply_stream = self.engine.submit(request, slot)
        reply.image_detail = reply_stream.image_detail
        if owner:
            self._running[owner] = reply_stream
        try:
            for event in reply_stream:
                reply.image_detail = reply_stream.image_detail  # a server's window may lower it
                reply.take(event)
                if reply.timing is not None:
                    self.last_timing = reply.timing
                yield reply
        finally:
            # A client that goes away closes this generator: stop the model too.
            reply_stream.cancel()
            if self._running.get(owner) is reply_stream:
                del self._running[owner]

    def answer(
        self,
        conversation_id: str,
        system_prompt: str,
        options: GenerationOptions,
        slot: QueueSlot | None = None,
        *,
        user: str = LOCAL_USER,
    ) -> Iterator[Reply]:
        """Reply to the stored conversation: yields the reply as it grows, and keeps the answer,
        marked interrupted if it was stopped (also when the consumer goes away). A description
        (the last message is a level's prompt) starts with the AI notice, and its level may ask
        for an image detail (see describe.level_options). `slot` is a queue place reserved for
        it; without one a place is reserved before any file is read. `system_prompt` is kept
        with a conversation at its first reply; later replies use the one it keeps."""
        conversation = self.history.get(conversation_id, user)
        # A conversation keeps the system prompt it was started with (written once, at its
        # first reply).
        if conversation.system_prompt is None:
            system_prompt = self.history.keep_system_prompt(conversation_id, system_prompt.strip())
        else:
            system_prompt = conversation.system_prompt
        level = level_of(conversation.messages[-1].text)
        prefix = f"{AI_NOTICE} " if level else ""
        options = level_options(level, options)
        note = self.intake.left_out_note(conversation.messages[-1])  # PDF pages not read
        prefix += f"*{note}*\n\n" if note else ""
        reply = Reply()
        try:
            slot = slot or self.queue_slot()
            conversation, left_out = self.intake.sent_turns(conversation, system_prompt)
            messages = self.intake.model_messages(conversation, system_prompt)
        except MediaError as exc:  # busy, or a file of this conversation went missing
            if slot is not None:
                slot.release()  # not sent: its place is free again
            reply.error = str(exc)
            yield reply
            return
        try:
            with slot:
                request = ChatRequest(tuple(messages), options)
                for reply in self.stream(request, conversation_id, prefix, slot, left_out):
                    yield reply
        finally:
            # What was written is kept: marked interrupted when it was stopped (also when the
            # consumer went away) or cut off by a failure, whose sentence the page shows. A
            # reply that failed before its first word is not kept (Regenerate retries it).
            if reply.timing or reply.thinking or reply.answer != prefix:
                status = "complete" if reply.finished else "interrupted"
                kept = StoredMessage(
                    "assistant", reply.answer, (), reply.thinking, status, reply.image_detail
                )
                self.history.append(conversation_id, kept)

    def stop(self, conversation_id: str, user: str = LOCAL_USER) -> None:
        """Stop: the model stops within one decoding step; the reply ends marked stopped."""
        if self.history.get(conversation_id or "", user) is None:
            return  # not this user's reply to stop
        reply_stream = self._running.get(conversation_id)
        if reply_stream is not None:
            reply_stream.cancel()

    def drop_last_answer(self, conversation_id: str, user: str) -> bool:
        """Forget the last answer (if the conversation ends with one); False if it is gone."""
        conversation = self.history.get(conversation_id or "", user)
        if conversation is None or not conversation.messages:
            return False
        if conversation.messages[-1].role == "assistant":
            self.history.truncate(conversation_id, len(conversation.messages) - 1)
        return True

    def ask_for_description(
        self, conversation_id: str, level: str, file: Attachment, user: str
    ) -> None:
        """Keep the level's prompt with the `file` to describe (an image, a PDF with its pages
        chosen, a video) as the person's message; a conversation that starts with it is named
        after the level and the file, not after the long prompt."""
        if self.history.get(conversation_id, user).title == NEW_TITLE:
            self.history.rename(conversation_id, f"{LEVELS[level].label}: {file.name}")
        self.history.append(conversation_id, StoredMessage("user", level_prompt(level), (file,)))
