"""Shared fixtures: the miniature checkpoint is built once per test session, in a temp cache."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import soundfile

from bench.samples import photo, speak, tone
from bench.serving import wait_until_ready
from model import ChatRequest, Engine, LocalEngine, ModelConfig, QueueSlot, ReplyStream

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
APP_START_S = 240
SHORT_REPLY_TOKENS = 24  # Max new tokens where a test checks what is around a reply
QUESTION = "What color is the car in this picture? Please describe it in a few words."
# Measured on the development CPU: 0 for every fixture but the 8 kHz one, which hears "is" as
# "in" (1 of 15 words, 0.067); the first sentence alone was fragile (up to 2 of 8 words wrong
# with sox's random dither), so the fixtures use both sentences and no dither (`sox -D`).
# 0.25 passes up to 3 wrong words in 15, room for other CPUs' int8 kernels and espeak-ng or sox
# versions; audio read at the wrong rate or channel layout gives nothing or WER near 1.
MAX_WER = 0.25


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files holding `heavy` tests first: run in two processes (`-n 2 --dist loadfile
    --no-loadscope-reorder`), each takes whole files in this order, so the long ones start early
    and neither process is left running one alone at the end."""
    heavy = {item.path for item in items if item.get_closest_marker("heavy")}
    items.sort(key=lambda item: item.path not in heavy)  # stable: each file keeps its order


@pytest.fixture(scope="session", autouse=True)
def home() -> Iterator[Path]:
    """A home folder of the tests' own, where the apps they start keep their conversations in
    ~/.loupe, the default, as a person's Loupe does. It lies outside the temp folder and the
    working folder, which Gradio always serves files from: a file the page offers that Gradio
    may not serve fails here as it would for a person."""
    folder = Path(tempfile.mkdtemp(prefix=".loupe-test-home-", dir=Path.home()))
    assert not folder.is_relative_to(tempfile.gettempdir()) and not folder.is_relative_to(ROOT)
    saved = {name: os.environ.get(name) for name in ("HOME", "LOUPE_DATA_DIR")}
    os.environ["HOME"] = str(folder)
    os.environ.pop("LOUPE_DATA_DIR", None)
    yield folder
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loupe-cache")
    os.environ["LOUPE_CACHE_DIR"] = str(root)  # for app processes the tests start
    return root


@pytest.fixture(scope="session")
def miniature(cache_root: Path) -> Path:
    from model.miniature import ensure_miniature

    return ensure_miniature(cache_root)


@pytest.fixture(scope="session")
def processor(miniature: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(miniature)


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty Hugging Face cache and no hub (as HF_HUB_OFFLINE=1 at start-up would give)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="session")
def recognizer():
    """The real speech recognizer (faster-whisper tiny.en), loaded once."""
    from model import SpeechRecognizer

    recognizer = SpeechRecognizer()
    recognizer.start_loading()
    return recognizer


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference's length, ignoring case and punctuation."""
    ref, hyp = words(reference), words(hypothesis)
    # distances[j]: edits turning the reference words seen so far into hyp[:j]
    distances = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        diagonal, distances[0] = distances[0], i
        for j, hyp_word in enumerate(hyp, 1):
            substitution = diagonal + (ref_word != hyp_word)
            diagonal = distances[j]
            distances[j] = min(distances[j] + 1, distances[j - 1] + 1, substitution)
    return distances[-1] / len(ref)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


@pytest.fixture(scope="session")
def demo_config(miniature: Path, cache_root: Path) -> ModelConfig:
    return ModelConfig(demo=True, cache_root=cache_root)


@pytest.fixture(scope="session")
def engine(demo_config: ModelConfig):
    engine = LocalEngine(demo_config, queue_size=4)
    engine.start()
    wait_until_ready(engine)
    yield engine
    engine.close()


class SharedEngine:
    """The session's engine, for code that would start and close an engine of its own (a
    describe run, the MCP tools), which must leave it open for the tests after them. Its replies
    are cut to SHORT_REPLY_TOKENS: these tests check files, rows, prompts and sentences, which a
    reply's length does not change, and the demo model's random words would otherwise run to
    the default 512."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def submit(self, request: ChatRequest, slot: QueueSlot | None = None) -> ReplyStream:
        tokens = min(request.options.max_new_tokens, SHORT_REPLY_TOKENS)
        options = replace(request.options, max_new_tokens=tokens)
        return self.engine.submit(replace(request, options=options), slot)

    def __getattr__(self, name: str):
        return getattr(self.engine, name)


@pytest.fixture
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    photo().save(path)
    return path


@pytest.fixture(scope="session")
def spoken_question(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speak(QUESTION, tmp_path_factory.mktemp("speech") / "question.wav")


@pytest.fixture
def audio_file(tmp_path: Path) -> Path:
    path = tmp_path / "tone.wav"
    soundfile.write(path, tone(2.0, rate=44_100, channels=2), 44_100)
    return path


def _ctrl_c_interrupts() -> None:
    """SIGINT interrupts, as in a terminal: a child inherits an ignored SIGINT, and
    pytest-xdist's workers ignore it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# Popen's arguments for a process started as a terminal starts it: leading a process group of
# its own (for os.killpg), Ctrl+C interrupting it.
AS_IN_A_TERMINAL = {"start_new_session": True, "preexec_fn": _ctrl_c_interrupts}


def start_app(
    *flags: str, env: dict[str, str] | None = None, own_group: bool = False
) -> tuple[subprocess.Popen, str]:
    """`python launch.py` on a free port; its console goes to a file (see stop_app). With
    `own_group` it leads a process group of its own, as in a terminal, for os.killpg (and
    Ctrl+C)."""
    port = free_port()
    console = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(
        [sys.executable, "launch.py", "--port", str(port), *flags],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=console,
        stderr=subprocess.STDOUT,
        text=True,
        **(AS_IN_A_TERMINAL if own_group else {}),
    )
    process.console = console
    return process, f"http://127.0.0.1:{port}"


def health_when_loaded(process: subprocess.Popen, url: str) -> dict:
    """Poll /health until the model has loaded (or failed); the last document."""
    deadline = time.monotonic() + APP_START_S
    while time.monotonic() < deadline:
        assert process.poll() is None, console_text(process)
        try:
            response = httpx.get(f"{url}/health", timeout=2)
        except httpx.HTTPError:
            response = None  # not listening yet
        if response is not None and response.status_code == 200:
            health = response.json()
            if health["status"] != "loading":
                return health
        time.sleep(0.5)
    raise AssertionError(f"no loaded model after {APP_START_S} s")


def model_state(url: str) -> str:
    """The app's model, as /health says: "idle" or "busy"."""
    return httpx.get(f"{url}/health", timeout=5).json()["engine"]["state"]


def wait_until_idle(url: str, timeout_s: float = 60.0) -> float:
    """Seconds until the app's model is idle, polled on /health; fails past `timeout_s`."""
    started = time.monotonic()
    while model_state(url) != "idle":
        waited = time.monotonic() - started
        assert waited < timeout_s, f"the model was still generating after {timeout_s} s"
        time.sleep(0.02)
    return time.monotonic() - started


def console_text(process: subprocess.Popen) -> str:
    process.console.seek(0)
    return process.console.read()


def stop_app(process: subprocess.Popen) -> str:
    """Stop the app; everything it printed."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return console_text(process)


@pytest.fixture(scope="session")
def demo_app(miniature: Path) -> Iterator[tuple[str, dict]]:
    """One `launch.py --demo` for the session: its URL and its first loaded /health."""
    process, url = start_app("--demo")
    try:
        yield url, health_when_loaded(process, url)
    finally:
        stop_app(process)


class ModelServer:
    """`transformers serve` on the miniature checkpoint: a real third-party OpenAI-compatible
    server, on a loopback port of its own. It can be killed and started again on that port."""

    def __init__(self, folder: Path, port: int | None = None):
        self.folder = folder
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen | None = None

    @property
    def model(self) -> str:
        """The name it answers to: the folder exactly as it was started with."""
        return str(self.folder)

    def start(self) -> ModelServer:
        from model.miniature import serve_command

        hub = Path(tempfile.mkdtemp(prefix="hub-"))  # an empty cache: it lists no models
        command, env = serve_command(self.folder, self.port, hub)
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + APP_START_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "transformers serve exited"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).is_success:
                    return self
            except httpx.HTTPError:
                time.sleep(0.3)
        raise AssertionError(f"transformers serve not up after {APP_START_S} s")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def model_server(
    miniature: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelServer]:
    """One `transformers serve` for the session, on a miniature whose replies run to their
    length limit; a test that kills it starts it again."""
    from model.miniature import long_winded_copy

    folder = long_winded_copy(miniature, tmp_path_factory.mktemp("served") / "miniature")
    server = ModelServer(folder).start()
    yield server
    server.kill()


def launch_chromium(playwright, heard: Path | None = None):
    """Debian's Chromium with a fake camera and microphone. With `heard`, the microphone plays
    that recording once from the start (a browser of its own for each recording), then silence."""
    assert CHROMIUM.exists(), "Chromium is needed: ./test.sh installs Debian's chromium"
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
    ]
    if heard is not None:
        args.append(f"--use-file-for-fake-audio-capture={heard}%noloop")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)


@pytest.fixture(scope="session")
def playwright() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright) -> Iterator:
    """One Chromium for the session; each test opens a fresh context (and page) in it."""
    browser = launch_chromium(playwright)
    yield browser
    browser.close()


def open_page(browser, url: str):
    """A page of a fresh browser context on `url`, once the page's script runs; close its
    context when done (`page.context.close()`)."""
    context = browser.new_context(
        permissions=["microphone", "camera", "clipboard-read", "clipboard-write"],
        viewport={"width": 1280, "height": 1000},
    )
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#message textarea")
    page.wait_for_function("!!window.loupe")  # the page's script is running
    return page


def set_reply_length(page, tokens: int) -> None:
    """Type `tokens` into Settings' Max new tokens (the panel open)."""
    field = page.get_by_label("number input for Max new tokens")
    field.fill(str(tokens))
    field.press("Enter")


def short_replies(page) -> None:
    """Set the page's Max new tokens to a few, as a person would in Settings: for tests of
    what is around a reply, which need not wait for the demo model's 512 tokens."""
    page.click("#settings-button")
    set_reply_length(page, SHORT_REPLY_TOKENS)
    page.locator("#settings button[aria-label='Toggle Sidebar']").click()


@pytest.fixture
def page(browser, demo_app) -> Iterator:
    """The session demo app's page, in a browser context of its own."""
    page = open_page(browser, demo_app[0])
    yield page
    page.context.close()
