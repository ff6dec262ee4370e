"""What the benchmark's stages start and wait for, one way for all of them: the app (or the
forced app of `bench/forced_app.py`) on a free port, a `transformers serve` model server, an
engine waited on until its model is ready, and an engine that holds every reply to its length.
`Shared` starts the forced app and the model server once a run, for every stage that uses them.

`wait_until_ready` is the tests' too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from model import (
    ChatRequest,
    Engine,
    EngineStatus,
    Finished,
    QueueSlot,
    ReplyEvent,
    ReplyStream,
    TextChunk,
    Timing,
)

ROOT = Path(__file__).resolve().parent.parent
START_S = 300  # an app or a model server: started, listening and its model loaded
ENGINE_READY_S = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(engine: Engine, timeout_s: float = ENGINE_READY_S) -> None:
    """Until the engine's model is loaded (or it connected to its server); RuntimeError if it
    fails to, or takes over `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (status := engine.status()).load_state != "ready":
        if status.load_state == "error":
            raise RuntimeError(f"the engine is not ready: {status.error}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"engine not ready after {timeout_s} s: {status}")
        time.sleep(0.05)


def wait_for_health(
    url: str, process: subprocess.Popen, what: str, loaded: bool = False
) -> dict[str, Any]:
    """Until `url` (a /health) answers; with `loaded`, until it no longer says the model is
    loading (RuntimeError if it says the load failed). Its last document."""
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        try:
            response = httpx.get(url, timeout=2)
        except httpx.HTTPError:
            response = None  # not listening yet
        if response is not None and response.is_success:
            health = response.json() if loaded else {}
            if health.get("status") == "error":
                raise RuntimeError(f"{what}'s model did not load: {health}")
            if health.get("status") != "loading":
                return health
        time.sleep(0.3)
    raise RuntimeError(f"{what} was not ready within {START_S} s")


@contextmanager
def app(
    flags: list[str], data_dir: Path, log: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`launch.py FLAGS` on a free port, keeping its conversations in `data_dir`; with `log`,
    the forced app (`python -m bench.forced_app LOG`: replies held to their length, chunk send
    times logged). Yields (its base URL, its process) once its model has loaded; stops it
    after."""
    port = free_port()
    program = ["-m", "bench.forced_app", str(log)] if log is not None else ["launch.py"]
    command = [sys.executable, *program, "--port", str(port), "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        [*command, *flags], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(f"{base}/health", process, "the app", loaded=True)
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def model_server(miniature: Path, work: Path) -> Iterator[tuple[str, str, float]]:
    """`transformers serve` on a long-winded copy of `miniature` (its replies run to
    `max_tokens`): (its /v1 URL, the model name it answers to, seconds until it answered
    /health)."""
    from model.miniature import long_winded_copy, serve_command

    folder = long_winded_copy(miniature, work / "served")
    port = free_port()
    hub = work / "hub"  # an empty cache: the server lists no other models
    hub.mkdir()
    command, env = serve_command(folder, port, hub)
    # PyTorch's threads spin while they wait: on every core, they starve the server's own HTTP
    # thread and this client's readers (on 2 cores, replies at times 30x slower). Loupe's own
    # worker leaves a core free the same way.
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) - 1))
    started = time.perf_counter()
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_health(f"http://127.0.0.1:{port}/health", server, "transformers serve")
        yield f"http://127.0.0.1:{port}/v1", str(folder), time.perf_counter() - started
    finally:
        server.kill()
        server.wait()


class Shared:
    """The forced app and the model server that several stages measure: each started by the
    first stage that asks for it, kept until `stack` closes, in folders under `work`."""

    def __init__(self, stack: ExitStack, work: Path):
        self._stack, self._work = stack, work
        self._apps: dict[tuple[str, ...], tuple[str, subprocess.Popen, Path]] = {}
        self._servers: dict[Path, tuple[str, str, float]] = {}

    def forced_app(self, flags: list[str]) -> tuple[str, subprocess.Popen, Path]:
        """`python -m bench.forced_app` with `flags`: (its base URL, its process, the log it
        appends a line to after each reply)."""
        if tuple(flags) not in self._apps:
            folder = self._work / f"app-{len(self._apps)}"
            folder.mkdir()
            log = folder / "sent.jsonl"
            base, process = self._stack.enter_context(app(flags, folder / "data", log))
            self._apps[tuple(flags)] = (base, process, log)
        return self._apps[tuple(flags)]

    def model_server(self, miniature: Path) -> tuple[str, str, float]:
        """`model_server(miniature)`'s (/v1 URL, model name, seconds its start took)."""
        if miniature not in self._servers:
            folder = self._work / f"server-{len(self._servers)}"
            folder.mkdir()
            self._servers[miniature] = self._stack.enter_context(model_server(miniature, folder))
        return self._servers[miniature]


def logged_count(log: Path) -> int:
    """How many replies the forced app has logged in `log` so far."""
    return len(_lines(log))


def logged(log: Path, line: int) -> list[list[float]]:
    """Line `line` of the forced app's log (one a reply): written when the handler's stream
    ends, which can be just after the client has read the last chunk."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = _lines(log)
        if len(lines) > line:
            return json.loads(lines[line])
        time.sleep(0.02)
    raise RuntimeError("the forced app logged no send times for the reply")


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


class FixedLength:
    """An engine whose replies all run to their length: `tokens` tokens each, or, with None,
    each request's own `max_new_tokens` (random weights stop at any token otherwise). Notes
    each finished reply's Timing; with `log`, writes one line of JSON to it after each reply:
    [[answer length so far, worker send time, time the reader took it], ...] for each answer
    chunk (times from time.time())."""

    def __init__(self, inner: Engine, tokens: int | None = None, log: Path | None = None):
        self.inner, self.tokens, self.log = inner, tokens, log
        self.timings: list[Timing] = []

    def start(self) -> None:
        self.inner.start()

    def status(self) -> EngineStatus:
        return self.inner.status()

    def close(self) -> None:
        self.inner.close()

    def reserve(self) -> QueueSlot | None:
        return self.inner.reserve()

    def forced(self, request: ChatRequest) -> ChatRequest:
        tokens = self.tokens or request.options.max_new_tokens
        options = replace(request.options, max_new_tokens=tokens, min_new_tokens=tokens)
        return replace(request, options=options)

    def submit(self, request: ChatRequest, slot: QueueSlot | None = None) -> Noted:
        stream = self.inner.submit(self.forced(request), slot)
        return Noted(stream, self.timings, self.log)


class Noted:
    """A ReplyStream that adds its Finished event's Timing to `timings` and, with `log`, writes
    its answer chunks' send times there when it ends."""

    def __init__(self, stream: ReplyStream, timings: list[Timing], log: Path | None):
        self.stream, self.timings, self.log = stream, timings, log

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def __iter__(self) -> Iterator[ReplyEvent]:
        answer_chars, sent = 0, []
        try:
            for event in self.stream:
                if isinstance(event, TextChunk) and not event.thinking:
                    answer_chars += len(event.text)
                    sent.append((answer_chars, event.sent_at, time.time()))
                elif isinstance(event, Finished) and not event.cancelled:
                    self.timings.append(event.timing)  # one append: safe from the job's threads
                yield event
        finally:
            if self.log is not None:
                with self.log.open("a") as file:
                    file.write(json.dumps(sent) + "\n")
