"""Desktop mode's screen capture, on a real X server (Xvfb) and with none."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import gradio as gr
import pytest
from mcp.server.mcpserver.exceptions import ToolError
from PIL import Image

from app.config import AppConfig, Limits
from app.history import History
from app.intake.speech import Speech
from app.mcp.endpoint import tools_offered
from app.mcp.tools import Tools
from app.page.desktop import capture_screen, open_window
from app.tasks.replies import Replies
from tests.conftest import ROOT, SharedEngine

SCREEN = (800, 600)


@pytest.fixture
def x_display(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    assert shutil.which("Xvfb"), "Xvfb is needed: ./test.sh installs Debian's xvfb"
    display = ":93"
    server = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # Xvfb takes a moment to accept connections
    monkeypatch.setenv("DISPLAY", display)
    yield display
    server.terminate()
    server.wait()


def test_capture_screen_attaches_the_whole_screen(x_display: str):
    box = capture_screen({"text": "What is on my screen?", "files": ["earlier.png"]}, 25.0)
    assert box["text"] == "What is on my screen?" and box["files"][0] == "earlier.png"
    with Image.open(box["files"][1]) as shot:
        assert shot.size == SCREEN


def test_a_screen_over_the_image_limit_is_scaled_down_to_fit(x_display: str):
    box = capture_screen({"text": "", "files": []}, max_image_mp=0.12)  # the screen is 0.48
    with Image.open(box["files"][0]) as shot:
        assert shot.size == (SCREEN[0] // 2, SCREEN[1] // 2)


def test_capture_screen_without_a_display_says_so(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(gr.Error, match="The screen could not be captured"):
        capture_screen({"text": "", "files": []}, 25.0)


def test_desktop_mode_without_gtk_or_qt_opens_the_browser_with_one_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
):
    import webview  # installed, as the README suggests; this machine has no GTK or Qt bindings

    assert webview
    opened, served = [], []
    monkeypatch.setattr("webbrowser.open", opened.append)
    open_window("http://127.0.0.1:7860", lambda: served.append(True))
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == [
        "pywebview finds neither GTK nor Qt bindings here, so Loupe opens in your browser "
        "instead of its own window."
    ]
    assert opened == ["http://127.0.0.1:7860"] and served == [True]  # it keeps serving
    assert not caplog.records  # no tracebacks from pywebview's toolkit search


# Desktop mode in a process of its own, its browser replaced by a line on its output.
OPEN_WINDOW = """
import webbrowser
webbrowser.open = lambda url: print("browser:", url)
from app.page.desktop import open_window
open_window("http://127.0.0.1:7860", lambda: print("serving"))
"""


def test_a_toolkit_that_aborts_as_it_starts_leaves_loupe_serving_in_the_browser(tmp_path):
    # Qt without its xcb libraries calls abort() as pywebview starts it; this machine has no Qt,
    # so a pywebview whose toolkit does the same stands in for it.
    stand_in = tmp_path / "webview"
    stand_in.mkdir()
    (stand_in / "__init__.py").write_text(
        "def create_window(*args, **kwargs): ...\ndef start(): ...\n"
    )
    (stand_in / "errors.py").write_text("class WebViewException(Exception): ...\n")
    (stand_in / "guilib.py").write_text("import os\ndef initialize():\n    os.abort()\n")
    run = subprocess.run(
        [sys.executable, "-c", OPEN_WINDOW],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "pywebview's GTK or Qt could not start here (Qt needs its xcb libraries, and either a "
        "display: see the README), so Loupe opens in your browser instead of its own window.",
        "browser: http://127.0.0.1:7860",
        "serving",
    ]


def test_an_agent_looks_at_the_screen_in_desktop_mode_only(
    x_display: str, engine, recognizer, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    speech = Speech(recognizer)
    replies = Replies(SharedEngine(engine), speech, History(tmp_path / "data"), AppConfig())
    tools = Tools(replies, speech, Limits())
    assert tools.look_at_screen in tools_offered(tools, desktop=True)
    assert tools.look_at_screen not in tools_offered(tools, desktop=False)
    assert tools.look_at_screen("What is on my screen?")  # the demo model's random words
    with_screen = replies.last_timing.prompt_tokens
    tools._answer([], "What is on my screen?")  # the same question without the screen
    assert with_screen >= replies.last_timing.prompt_tokens + 70  # the screen as an image
    with pytest.raises(ToolError, match="^Ask a question about the screen"):
        tools.look_at_screen("  ")
    monkeypatch.delenv("DISPLAY")
    with pytest.raises(ToolError, match="^The screen could not be captured"):
        tools.look_at_screen("And now?")
