"""Worker faults, 20 of each (4 on llama.cpp): killed, out of memory, hung. Each ends the
running reply with one sentence, a fresh worker answers the next message, and the saved
conversation is unchanged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from app.config import AppConfig
from app.history import History, StoredMessage
from app.page.chat_events import ChatHandlers
from app.page.voice import Voice
from bench.serving import wait_until_ready
from model import Engine, Finished, GenerationOptions, LocalEngine, ModelConfig
from model.config import FAULT_TRIGGER
from model.local_engine import WORKER_CRASHED, WORKER_HUNG
from model.worker_protocol import OUT_OF_MEMORY
from tests.conftest import ROOT
from tests.figures import record, spread_s

# Every fault goes through the same worker code path each time; repeats catch what happens only
# sometimes (a fault while the fresh worker loads, a stale event from the dead one). The
# llama.cpp worker shares that path and is checked less often. LOUPE_FAULTS_EACH=100 by hand.
FAULTS_EACH = {
    "transformers": int(os.environ.get("LOUPE_FAULTS_EACH", "8")),
    "llama.cpp": 4,
}
# Short, so many hangs stay quick, yet far above the demo model's gap between two tokens (tens of
# milliseconds); 2 s once caught a fresh worker's first token on a 2-core machine shared with
# other test runs.
HANG_TIMEOUT_S = 3.0
SHORT = GenerationOptions(max_new_tokens=8, min_new_tokens=8)
# Still running when the worker is killed: forced past anything the test waits for.
LONG = GenerationOptions(max_new_tokens=4000, min_new_tokens=4000)
SENTENCES = {"kill": WORKER_CRASHED, "out_of_memory": OUT_OF_MEMORY, "hang": WORKER_HUNG}
SAVED = (
    StoredMessage("user", "What is on my desk?"),
    StoredMessage("assistant", "A laptop, a cup of coffee and some papers."),
)


@pytest.mark.heavy
@pytest.mark.parametrize("backend", ["transformers", "llama.cpp"])
@pytest.mark.parametrize("fault", ["kill", "out_of_memory", "hang"])
def test_a_worker_fault_ends_the_reply_and_a_fresh_worker_answers_the_next(
    fault: str, backend: str, demo_config: ModelConfig, recognizer, tmp_path: Path
):
    injected = "" if fault == "kill" else fault
    config = replace(
        demo_config, inject_fault=injected, hang_timeout_s=HANG_TIMEOUT_S, backend=backend
    )
    engine = LocalEngine(config)
    engine.start()
    try:
        wait_until_ready(engine)
        history = History(tmp_path / "data")
        handlers = ChatHandlers(engine, Voice(recognizer), history, AppConfig())
        conversation_id = history.create()
        for message in SAVED:
            history.append(conversation_id, message)
        to_error, to_recovered = [], []
        for _ in range(FAULTS_EACH[backend]):
            kept = history.get(conversation_id).messages
            worker = engine.worker_pid
            started = time.monotonic()
            if fault == "kill":
                history.append(conversation_id, StoredMessage("user", "Talk at length."))
                replies = handlers.answer(conversation_id, "", LONG)
                next(replies)  # the reply is being written
                started = time.monotonic()
                os.kill(worker, signal.SIGKILL)
            else:
                history.append(conversation_id, StoredMessage("user", FAULT_TRIGGER))
                replies = handlers.answer(conversation_id, "", SHORT)
            *_, (shown, reply) = replies
            to_error.append(time.monotonic() - started)
            assert reply.error == SENTENCES[fault]
            assert shown[-1]["content"].endswith(f"⚠️ {SENTENCES[fault]}")
            # The person's message and everything before it are kept, and what the reply had
            # written before it failed, marked interrupted.
            failed_at = len(kept)
            messages = history.get(conversation_id).messages
            assert messages[:failed_at] == kept and messages[failed_at].role == "user"
            cut_off = messages[failed_at + 1 :]
            assert [(m.role, m.status) for m in cut_off] in ([], [("assistant", "interrupted")])
            if fault == "kill":
                assert cut_off and cut_off[0].text  # it was being written when the worker died

            history.edit_text(conversation_id, failed_at, "Then tell me what is on the wall.")
            recovering = time.monotonic()
            *_, (_, reply) = handlers.answer(conversation_id, "", SHORT)
            to_recovered.append(time.monotonic() - recovering)
            assert reply.error is None and reply.timing.tokens == SHORT.max_new_tokens
            assert engine.worker_pid not in (None, worker)
            after = history.get(conversation_id).messages
            assert after[:failed_at] == kept and after[-1].status == "complete"
            assert len(after) == failed_at + 2
    finally:
        engine.close()
    record(
        f"faults-{fault}" + ("" if backend == "transformers" else f"-{backend}"),
        {
            "faults": FAULTS_EACH[backend],
            "clear_errors": len(to_error),
            "recoveries": len(to_recovered),
            "fault_to_error": spread_s(to_error),
            "error_to_next_reply_done": spread_s(to_recovered),
        },
    )


def test_a_worker_that_died_while_idle_is_replaced_before_the_next_request(engine: Engine):
    from tests.test_engine import _request

    worker = engine.worker_pid
    os.kill(worker, signal.SIGKILL)
    psutil.Process(worker).wait(timeout=10)  # gone before anything was asked of it
    events = list(engine.submit(_request()))
    assert isinstance(events[-1], Finished), events
    assert engine.worker_pid not in (None, worker)


# Imports WORKER_PRELOAD in a fresh interpreter with torch.cuda's entry points watched.
WATCH_CUDA = """
import importlib, sys, torch
from model.local_engine import WORKER_PRELOAD
touched = []
for name in ("is_available", "device_count", "init", "_lazy_init", "get_device_capability"):
    original = getattr(torch.cuda, name)
    def watched(*args, _name=name, _original=original, **kwargs):
        touched.append(_name)
        return _original(*args, **kwargs)
    setattr(torch.cuda, name, watched)
for module in WORKER_PRELOAD:
    importlib.import_module(module)
print(",".join(touched))
"""


def test_the_fork_server_imports_nothing_that_touches_cuda():
    """Workers fork from it; one forked after CUDA started could not use the GPU."""
    result = subprocess.run(
        [sys.executable, "-c", WATCH_CUDA], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
