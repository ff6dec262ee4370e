"""The engine boundary: what the app holds, whichever engine answers.

Two engines stand behind it: `LocalEngine` runs Gemma in a supervised worker process on this
machine; `RemoteEngine` drives an OpenAI-compatible server (vLLM, Ollama, llama.cpp, another
Loupe). Both take a `ChatRequest` and return a `ReplyStream` of `ReplyEvent`s at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from .detail import ImageDetail
from .events import EngineError, Finished, ReplyEvent, TextChunk
from .messages import ChatRequest

LoadState = Literal["loading", "ready", "error"]
BUSY = "Loupe is busy, try again in a moment."
SHUTTING_DOWN = "Loupe is shutting down."
EngineKind = Literal["in-process", "remote"]


@dataclass(frozen=True)
class ModelInfo:
    """What answers, as the status line and /health show it.

    For a remote engine `device` and `quantization` are the server's business: "remote" and
    None; `url` is the server's address, without credentials. `context_tokens`: what a prompt
    and its reply may take together (0 where not known).
    """

    name: str
    demo: bool
    device: str
    quantization: str | None
    drafter: bool = False  # the multi-token-prediction drafter is loaded
    engine: EngineKind = "in-process"
    url: str | None = None
    context_tokens: int = 0
    backend: str = "transformers"  # the library that runs it in-process: or "llama.cpp"
    backend_reason: str = ""  # why that one, for the status line and /health


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot for /health and the status line.

    `notice` is one sentence the status line adds, such as a setting the server keeps to itself.
    """

    load_state: LoadState
    progress: str
    info: ModelInfo | None
    busy: bool
    queued: int
    error: str | None = None
    fallback_reason: str | None = None
    notice: str | None = None
    kind: EngineKind = "in-process"


class ReplyStream:
    """The events of one reply, in order; iterate it, or cancel it from any thread.

    The engine that made it calls `put` with each event and gives it `on_cancel`, which stops
    the reply where it runs (a decoding step, an HTTP stream). `image_detail` is the image
    budget its prompt is built with (None without images, or where a server keeps its own):
    set when the request is taken, and changed only before the first event, if at all.
    """

    def __init__(self, request_id: int, on_cancel: Callable[[], None] | None = None):
        self.request_id = request_id
        self.image_detail: ImageDetail | None = None
        self._on_cancel = on_cancel
        self._events: queue.Queue[ReplyEvent] = queue.Queue()
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop this reply: dropped while waiting, stopped within one step if running."""
        self.cancelled.set()
        if self._on_cancel is not None:
            self._on_cancel()

    def put(self, event: ReplyEvent) -> None:
        self._events.put(event)

    def refusal(self) -> EngineError | None:
        """The error an engine answered with at once (busy, no model), without waiting for
        anything else; None when the request was taken."""
        with self._events.mutex:
            first = self._events.queue[0] if self._events.queue else None
        return first if isinstance(first, EngineError) else None

    def __iter__(self) -> Iterator[ReplyEvent]:
        """Events in order; text chunks that queued up while the reader was busy come as one.

        So a reader slower than the model (a web page) makes fewer, larger updates and falls
        no further behind, while a fast one still gets every token at once.
        """
        waiting: ReplyEvent | None = None
        while True:
            event, waiting = waiting or self._events.get(), None
            while isinstance(event, TextChunk):
                try:
                    following = self._events.get_nowait()
                except queue.Empty:
                    break
                if not (isinstance(following, TextChunk) and following.thinking == event.thinking):
                    waiting = following
                    break
                event = TextChunk(event.text + following.text, event.thinking, event.sent_at)
            yield event
            if isinstance(event, Finished | EngineError):
                return


class QueueSlot:
    """A place held in an engine's queue while a request is still being prepared (its media
    decoded), so that a full queue says "busy" before that work rather than after it.

    Give it to `Engine.submit`, which queues the request in it; a slot not used by the end of a
    `with` block (the request was refused, or failed to decode) is given back.
    """

    def __init__(self, release: Callable[[], None]):
        self._release = release
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        """Give the place back (once; later calls, and calls after `submit`, do nothing)."""
        if self._give_up():
            self._release()

    def taken_over(self) -> QueueSlot | None:
        """A new slot that holds this one's place from now on (this one then holds nothing);
        None if the place was given back already."""
        return QueueSlot(self._release) if self._give_up() else None

    def _give_up(self) -> bool:
        """Stop holding the place; whether it was still held."""
        with self._lock:
            held, self._held = self._held, False
        return held

    def __enter__(self) -> QueueSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RequestQueue:
    """Requests waiting for an engine's reply threads, in order. Bounded: past its size a
    request is told at once that Loupe is busy, instead of waiting unseen. A place can be
    reserved before the request exists (`reserve`), so that the busy answer comes before any
    work on it."""

    def __init__(self, size: int):
        # Unbounded itself: the places bound it (waiting requests and reservations together).
        self._queue: queue.Queue[tuple[ReplyStream, ChatRequest, QueueSlot] | None] = queue.Queue()
        self._places = threading.Semaphore(size)

    def reserve(self) -> QueueSlot | None:
        """A place for a request still being prepared; None when every place is taken."""
        if not self._places.acquire(blocking=False):
            return None
        return QueueSlot(self._places.release)

    def offer(
        self, stream: ReplyStream, request: ChatRequest, slot: QueueSlot | None = None
    ) -> None:
        """Queue the request in `slot`'s place (reserved earlier) or in a free one; busy if
        there is none."""
        place = (slot.taken_over() if slot is not None else None) or self.reserve()
        if place is None:
            stream.put(EngineError("busy", BUSY))
            return
        self._queue.put((stream, request, place))

    def take(self) -> tuple[ReplyStream, ChatRequest] | None:
        """The next request, waiting for one (its place is free again); None once the queue
        is closed."""
        item = self._queue.get()
        if item is None:
            return None
        stream, request, slot = item
        slot.release()
        return stream, request

    def waiting(self) -> int:
        return self._queue.qsize()

    def drain(self, error: EngineError) -> None:
        """Answer every waiting request with `error`."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[2].release()
                item[0].put(error)

    def close(self, readers: int) -> None:
        """Turn the waiting requests away, and each of `readers` threads taking from it."""
        self.drain(EngineError("unavailable", SHUTTING_DOWN))
        for _ in range(readers):
            self._queue.put(None)


class Engine(Protocol):
    """What answers chat requests. Create, `start()`, then `submit()` from any thread."""

    def start(self) -> None:
        """Begin loading or connecting in the background and return at once."""

    def reserve(self) -> QueueSlot | None:
        """A place in the queue for a request still being prepared (see QueueSlot); None when
        the queue is full, so the caller says "busy" before decoding anything."""

    def submit(self, request: ChatRequest, slot: QueueSlot | None = None) -> ReplyStream:
        """Queue a request (in `slot`, if one was reserved); a full queue or no model answers
        with an EngineError at once.

        An Auto image budget is chosen here (model.detail.resolve), so what runs the model
        always gets a number; it takes tens of milliseconds per image, so call it off an event
        loop."""

    def status(self) -> EngineStatus: ...

    def close(self) -> None:
        """Stop answering; waiting requests end with an EngineError."""
