"""`launch.py` with each reply held to its full length and its chunks' send times logged.

For the app benchmark (bench/app_speed.py). Random weights stop at a random stop token, so
replies are forced to `max_new_tokens`, as raw `generate` is when timed. After each reply, one
line of JSON goes to LOG: [[answer length so far, worker send time, time the page's handler
took it], ...] for each answer chunk (times from time.time()), so the client can match each
chunk to the update that brought it, and tell the engine's share of the delay from Gradio's.

    python -m bench.forced_app LOG [launch.py flags]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import launch
from model import (
    ChatRequest,
    Engine,
    EngineStatus,
    QueueSlot,
    ReplyEvent,
    ReplyStream,
    TextChunk,
    open_engine,
)


class ForcedEngine:
    """An engine wrapped to force reply lengths (in-process engine) and log chunk send times
    to `log`."""

    def __init__(self, inner: Engine, log: Path):
        self.inner, self.log = inner, log

    def start(self) -> None:
        self.inner.start()

    def status(self) -> EngineStatus:
        return self.inner.status()

    def close(self) -> None:
        self.inner.close()

    def reserve(self) -> QueueSlot | None:
        return self.inner.reserve()

    def submit(self, request: ChatRequest, slot: QueueSlot | None = None) -> LoggedStream:
        options = replace(request.options, min_new_tokens=request.options.max_new_tokens)
        return LoggedStream(self.inner.submit(replace(request, options=options), slot), self.log)


class LoggedStream:
    """A ReplyStream that notes each answer chunk's send time, written out when it ends."""

    def __init__(self, stream: ReplyStream, log: Path):
        self.stream, self.log = stream, log

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def __iter__(self) -> Iterator[ReplyEvent]:
        answer_chars, sent = 0, []
        try:
            for event in self.stream:
                if isinstance(event, TextChunk) and not event.thinking:
                    answer_chars += len(event.text)
                    sent.append((answer_chars, event.sent_at, time.time()))
                yield event
        finally:
            with self.log.open("a") as file:
                file.write(json.dumps(sent) + "\n")


if __name__ == "__main__":
    log = Path(sys.argv[1])
    launch.open_engine = lambda *args, **kwargs: ForcedEngine(open_engine(*args, **kwargs), log)
    sys.exit(launch.main(sys.argv[2:]))
