"""The in-process engine: a supervised worker process that owns the model, fed from a bounded
queue.

`LocalEngine.submit` returns a `ReplyStream` at once. A dispatcher thread hands requests to the
worker one at a time, in arrival order, and relays what the worker streams back. If the worker dies,
runs out of memory or sends nothing for `ModelConfig.hang_timeout_s`, the running request ends
with an EngineError and a fresh worker is started for the next one.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import signal
import threading

from . import detail
from .config import ModelConfig
from .engine import (
    SHUTTING_DOWN,
    EngineStatus,
    LoadState,
    ModelInfo,
    QueueSlot,
    ReplyStream,
    RequestQueue,
)
from .events import STOPPED_BEFORE_START, ContextTrimmed, EngineError, Finished, TextChunk
from .messages import ChatRequest
from .worker import serve
from .worker_protocol import REPLACED_AFTER

log = logging.getLogger("loupe.engine")
DEFAULT_QUEUE_SIZE = 8
WORKER_EXIT_S = 5.0
WORKER_CRASHED = (
    "The model worker stopped unexpectedly; it is restarting, so please send the "
    "message again in a moment."
)
WORKER_HUNG = (
    "The model stopped responding, so Loupe restarted it; please send the message again in a "
    "moment."
)
DEMO_FALLBACK_NOTE = "Running the demo model instead: random weights, so its replies are noise."
# Imported once into the fork server, so that each worker (also one replacing a crashed one)
# starts without importing them again: a restart of the demo model takes 1.5 s instead of 8.
# None of them may touch CUDA while importing (bitsandbytes does, so it is not here): a process
# forked after CUDA started cannot use the GPU.
WORKER_PRELOAD = (
    "model.worker",
    "torch",
    "transformers.image_processing_utils",
    "transformers.models.gemma4_unified.modeling_gemma4_unified",
    "transformers.models.gemma4_unified.processing_gemma4_unified",
)


class _WorkerHung(Exception):
    """The worker sent nothing for ModelConfig.hang_timeout_s while answering."""


def _worker_context() -> multiprocessing.context.BaseContext:
    """How worker processes start: never a plain fork of this process (it has threads, and
    forked CUDA breaks), but from a fork server that has only imported WORKER_PRELOAD and never
    touched CUDA; a fresh interpreter (spawn) where there is none (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_PRELOAD))
    return context


def _start_fork_server(context: multiprocessing.context.BaseContext) -> None:
    """Start the fork server now, from the main thread, with Ctrl+C ignored: it keeps that (and
    so do the workers it forks), where it would otherwise die of an interrupt during the seconds
    it imports WORKER_PRELOAD, before it ignores it itself."""
    if (
        context.get_start_method() != "forkserver"
        or threading.current_thread() is not threading.main_thread()
    ):
        return  # started by the first worker instead, as multiprocessing does
    from multiprocessing import forkserver

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


class LocalEngine:
    """The in-process engine: owns the worker process. Create, `start()`, then `submit()` from
    any thread."""

    def __init__(self, config: ModelConfig, queue_size: int = DEFAULT_QUEUE_SIZE):
        self._config = config
        self._ctx = _worker_context()
        self._queue = RequestQueue(queue_size)
        # The id of the request the person stopped; the worker compares it at every step.
        self._cancel_id = self._ctx.Value("q", 0, lock=False)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._running: ReplyStream | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn = None
        self._load_state: LoadState = "loading"
        self._progress = "Starting the model worker"
        self._info: ModelInfo | None = None
        self._error: str | None = None
        self._fallback_reason: str | None = None
        self._closing = threading.Event()  # set by close(): no worker is started after it
        self._thread = threading.Thread(target=self._dispatch, name="loupe-engine", daemon=True)

    def start(self) -> None:
        """Start the worker and return at once; the model loads in the background."""
        _start_fork_server(self._ctx)
        self._thread.start()

    def status(self) -> EngineStatus:
        with self._lock:
            return EngineStatus(
                self._load_state,
                self._progress,
                self._info,
                busy=self._running is not None,
                queued=self._queue.waiting(),
                error=self._error,
                fallback_reason=self._fallback_reason,
            )

    @property
    def worker_pid(self) -> int | None:
        """The worker process's id, while one runs."""
        process = self._process
        return process.pid if process is not None else None

    def reserve(self) -> QueueSlot | None:
        return self._queue.reserve()

    def submit(self, request: ChatRequest, slot: QueueSlot | None = None) -> ReplyStream:
        """Queue a request; a full queue or a failed load answers with an EngineError at once.
        An Auto image budget is chosen first, within the context window once it is known."""
        request_id = next(self._ids)
        stream = ReplyStream(request_id, lambda: self._cancel_running(request_id))
        if self._load_state == "error":
            stream.put(EngineError("unavailable", self._error or "No model is loaded."))
            return stream
        request, stream.image_detail = detail.resolve(request, self._context_tokens())
        self._queue.offer(stream, request, slot)
        return stream

    def _context_tokens(self) -> int:
        """The window a prompt and its reply share: the loaded model's (capped by the
        configuration), or the configured cap while the model loads (0: not yet known)."""
        info = self._info
        return info.context_tokens if info and info.context_tokens else self._config.context_tokens

    def close(self) -> None:
        """Stop the dispatcher and the worker process, quietly: the running reply is cancelled
        (it ends within one decoding step), waiting ones are turned away, and nothing is
        restarted or reloaded."""
        self._closing.set()
        self._queue.close(readers=1)
        with self._lock:
            running = self._running
        if running is not None:
            running.cancel()
        # The dispatcher owns the worker until it returns; a loading worker is not waited for.
        if self._thread.is_alive() and self._load_state != "loading":
            self._thread.join(timeout=WORKER_EXIT_S)
        self._stop_worker(kill=self._thread.is_alive())  # still loading, or hung

    # -- dispatcher thread -------------------------------------------------------------------

    def _dispatch(self) -> None:
        config: ModelConfig | None = self._config
        while config is not None:
            if not self._worker_alive():
                config = self._replace_worker(config)
                continue
            item = self._queue.take()
            if item is None:
                return
            if not self._worker_alive():  # it died while idle: a fresh one takes this request
                config = self._replace_worker(config)
                if config is None:
                    item[0].put(EngineError("unavailable", self._error or "No model is loaded."))
                    return
            self._run(*item)

    def _worker_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def _replace_worker(self, config: ModelConfig) -> ModelConfig | None:
        """Start a worker in place of any old one; the config it runs, or None if none loads
        (or Loupe is closing)."""
        self._stop_worker()
        if self._closing.is_set():
            return None
        failure = self._start_worker(config)
        if self._closing.is_set():  # close() ended the worker while it loaded
            return None
        if failure and config.fallback_to_demo:
            log.warning("%s %s", failure, DEMO_FALLBACK_NOTE)
            self._set(fallback_reason=failure)
            return self._replace_worker(config.as_demo())
        if failure:
            log.error("%s", failure)
            self._set(load_state="error", error=failure, progress="")
            self._queue.drain(EngineError("unavailable", failure))
            return None
        return config

    def _run(self, stream: ReplyStream, request: ChatRequest) -> None:
        with self._lock:
            if stream.cancelled.is_set():
                stream.put(STOPPED_BEFORE_START)
                return
            self._running = stream
        try:
            self._conn.send((stream.request_id, request))
            while True:
                # A worker sends at least a token per step; silence this long means it hangs.
                if not self._conn.poll(self._config.hang_timeout_s):
                    raise _WorkerHung
                message = self._conn.recv()
                if self._relay(stream, message):
                    break
            if message[0] == "error" and message[2] in REPLACED_AFTER:
                log.error("The model worker stopped after %s; restarting it.", message[2])
                self._stop_worker()  # it exits by itself; the dispatcher starts a fresh one
        except _WorkerHung:
            log.error(
                "The model worker sent nothing for %s s; stopping and restarting it.",
                self._config.hang_timeout_s,
            )
            stream.put(EngineError("worker_hung", WORKER_HUNG))
            self._stop_worker(kill=True)
        except (EOFError, OSError):
            if self._closing.is_set():  # close() ended the worker: no fault, nothing to restart
                stream.put(EngineError("unavailable", SHUTTING_DOWN))
                return
            log.error(
                "The model worker stopped mid-reply (exit code %s); restarting it.",
                self._process.exitcode if self._process else None,
            )
            stream.put(EngineError("worker_crashed", WORKER_CRASHED))
            self._stop_worker()
        finally:
            with self._lock:
                self._running = None

    @staticmethod
    def _relay(stream: ReplyStream, message: tuple) -> bool:
        """Pass one worker message on; True when the reply is over."""
        kind = message[0]
        if kind == "chunk":
            stream.put(TextChunk(message[2], thinking=message[3], sent_at=message[4]))
            return False
        if kind == "call":
            stream.put(message[2])  # a ToolCall
            return False
        if kind == "trimmed":
            stream.put(ContextTrimmed(message[2]))
            return False
        if kind == "done":
            stream.put(Finished(message[2], cancelled=message[3]))
        else:
            stream.put(EngineError(message[2], message[3]))
        return True

    def _start_worker(self, config: ModelConfig) -> str | None:
        """Start a worker and wait until it has loaded; the failure sentence, or None."""
        self._set(load_state="loading", progress="Starting the model worker")
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(
            target=serve,
            args=(config, child_conn, self._cancel_id),
            name="loupe-model-worker",
            daemon=True,
        )
        process.start()
        child_conn.close()  # so recv() raises EOFError once the worker is gone
        self._process, self._conn = process, parent_conn
        while True:
            try:
                message = parent_conn.recv()
            except (EOFError, OSError, TypeError):
                # TypeError: close() closed this connection under recv() (Ctrl+C while loading);
                # _replace_worker then sees the engine closing and says nothing.
                self._stop_worker()
                return (
                    f"The model worker stopped while loading (exit code {process.exitcode}); "
                    "the machine may be out of memory."
                )
            if message[0] == "progress":
                # The page's status line shows every percent; the console each tenth, as log lines.
                if not message[1].endswith("%") or message[1].endswith("0%"):
                    log.info("%s", message[1])
                self._set(progress=message[1])
            elif message[0] == "loaded":
                log.info(
                    "Ready: %s on %s, %s",
                    message[1].name,
                    message[1].device,
                    message[1].quantization,
                )
                self._set(load_state="ready", info=message[1], progress="Ready", error=None)
                return None
            else:
                self._stop_worker()
                return message[1]

    def _stop_worker(self, kill: bool = False) -> None:
        """End the worker: gently (an idle worker exits when its connection closes), or at
        once with `kill` (a hung one never reads its connection again)."""
        process, self._process = self._process, None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if process is not None:
            process.join(timeout=0 if kill else WORKER_EXIT_S)
            if process.is_alive():
                process.kill()
                process.join()

    def _cancel_running(self, request_id: int) -> None:
        with self._lock:
            if self._running is not None and self._running.request_id == request_id:
                self._cancel_id.value = request_id

    def _set(self, **fields: object) -> None:
        with self._lock:
            for name, value in fields.items():
                setattr(self, f"_{name}", value)
