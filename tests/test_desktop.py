"""Desktop mode's screen capture, on a real X server (Xvfb) and with none."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import gradio as gr
import pytest
from PIL import Image

from app.desktop import capture_screen, open_window

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
