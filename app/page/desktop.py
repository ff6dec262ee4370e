"""Desktop mode: the page in its own window, and screen captures and recordings into the next
message."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
import webbrowser
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import gradio as gr
from PIL import Image

from ..intake.probe import MediaError
from ..intake.screen import grab_screen
from .box import with_file
from .errors import refused

WINDOW_TITLE = "Loupe"
# Run in a child process by toolkit_problem: finds the toolkit as webview.start() would (Qt's
# display plugin loads here, or aborts the process), then starts it.
NO_TOOLKIT_EXIT = 3
TOOLKIT_PROBE = f"""
import sys
from webview.errors import WebViewException
from webview.guilib import initialize
try:
    toolkit = initialize()
except WebViewException:
    sys.exit({NO_TOOLKIT_EXIT})
toolkit.setup_app()
"""
TOOLKIT_PROBE_S = 60
RECORD_SCREEN = "Record screen"
STOP_RECORDING = "Stop recording"
# A screen recording is a video like any other: about one frame a second reaches the model, so
# two a second leaves room to choose; 30 s keeps it to a few thousand tokens.
RECORD_MAX_S = 30.0
RECORD_FPS = 2
RECORD_MAX_SIDE_PX = 1920


def capture_screen(value: dict | None, max_image_mp: float) -> Any:
    """Grab the whole screen into the message box (needs a desktop session); a screen larger
    than the image limit is scaled down to fit it (intake.screen)."""
    try:
        shot = grab_screen(max_image_mp)
    except MediaError as exc:
        raise refused(exc) from None
    with tempfile.NamedTemporaryFile(prefix="screen-", suffix=".png", delete=False) as file:
        shot.save(file, format="PNG")
    return with_file(value, file.name)


class ScreenRecorder:
    """Record screen: the whole screen, RECORD_FPS frames a second, into an MP4 (H.264, no
    sound), until stopped or RECORD_MAX_S; the recording then joins the next message, where it
    is taken as any video is. One recording at a time, for the one person at the desktop."""

    def __init__(self, max_s: float = RECORD_MAX_S, fps: float = RECORD_FPS):
        self.max_s, self.fps = max_s, fps
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._path = ""
        self._error = ""

    @property
    def recording(self) -> bool:
        return self._thread is not None

    def toggle(self, value: dict | None) -> tuple[Any, Any]:
        """The button: start recording (it becomes Stop recording), or stop and attach."""
        if not self.recording:
            self.start()
            return gr.skip(), gr.update(value=STOP_RECORDING)
        return self.stop(value), gr.update(value=RECORD_SCREEN)

    def start(self) -> None:
        """Begin recording in the background; one sentence if the screen cannot be grabbed."""
        from PIL import ImageGrab

        try:
            first = ImageGrab.grab()
        except OSError as exc:
            raise refused(f"The screen could not be recorded: {exc}.") from None
        with tempfile.NamedTemporaryFile(prefix="screen-", suffix=".mp4", delete=False) as file:
            self._path = file.name
        self._stop.clear()
        self._error = ""
        self._thread = threading.Thread(target=self._record, args=(first,), daemon=True)
        self._thread.start()

    def stop(self, value: dict | None) -> Any:
        """Finish the recording and put it in the message box."""
        thread, self._thread = self._thread, None
        if thread is None:
            return gr.skip()
        self._stop.set()
        thread.join()
        if self._error:
            raise refused(f"The screen recording failed: {self._error}.")
        return with_file(value, self._path)

    def _record(self, first: Image.Image) -> None:
        import av
        from PIL import ImageGrab

        width, height = _even_size(first.size)
        started = time.monotonic()
        try:
            with av.open(self._path, "w", format="mp4") as out:
                stream = out.add_stream("libx264", rate=int(self.fps))
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.codec_context.time_base = Fraction(1, 1000)  # stamped in milliseconds
                stream.options = {"preset": "veryfast", "tune": "stillimage"}
                shot, at = first, 0.0
                while True:
                    frame = av.VideoFrame.from_image(shot.convert("RGB").resize((width, height)))
                    frame.pts, frame.time_base = int(at * 1000), Fraction(1, 1000)
                    out.mux(stream.encode(frame))
                    if self._stop.wait(1 / self.fps) or time.monotonic() - started >= self.max_s:
                        break
                    shot, at = ImageGrab.grab(), time.monotonic() - started
                out.mux(stream.encode(None))
        except Exception as exc:  # the display went away, the disk is full, ...
            self._error = str(exc) or type(exc).__name__


def _even_size(size: tuple[int, int]) -> tuple[int, int]:
    """A screen's size for H.264: at most RECORD_MAX_SIDE_PX wide or high, even numbers."""
    scale = min(1.0, RECORD_MAX_SIDE_PX / max(size))
    return tuple(max(2, int(side * scale) // 2 * 2) for side in size)


def open_window(url: str, serve_forever: Callable[[], None]) -> None:
    """Show the page in a native window when pywebview can make one, else in the browser.

    pywebview needs GTK or Qt bindings on Linux (see the README); without them, without
    pywebview, or with a toolkit that cannot start (`toolkit_problem`), the page opens in the
    browser and the console says why in one sentence. pywebview must own the main thread, so
    the server keeps serving from its own threads until the window closes; in the browser case
    `serve_forever` blocks instead.
    """
    try:
        import webview
    except ImportError:
        in_browser(url, serve_forever, "pywebview is not installed")
        return
    problem = toolkit_problem()
    if problem:
        in_browser(url, serve_forever, problem)
        return
    webview.create_window(WINDOW_TITLE, url, width=1200, height=900)
    webview.start()


def toolkit_problem() -> str | None:
    """Why pywebview cannot open a window here, or None: its toolkit is found and started in
    a child process first, because one that cannot start may end the process it runs in (Qt
    without its xcb libraries calls abort())."""
    try:
        probe = subprocess.run(
            [sys.executable, "-c", TOOLKIT_PROBE],
            capture_output=True,  # pywebview's tracebacks and Qt's complaints: the sentence says it
            text=True,
            timeout=TOOLKIT_PROBE_S,
        )
    except subprocess.TimeoutExpired:
        return f"pywebview's toolkit did not start within {TOOLKIT_PROBE_S} s"
    if probe.returncode == 0:
        return None
    if probe.returncode == NO_TOOLKIT_EXIT:
        return "pywebview finds neither GTK nor Qt bindings here"
    return (
        "pywebview's GTK or Qt could not start here (Qt needs its xcb libraries, and either "
        "a display: see the README)"
    )


def in_browser(url: str, serve_forever: Callable[[], None], why: str) -> None:
    """The desktop page in the browser instead of its own window, saying why."""
    print(f"{why}, so Loupe opens in your browser instead of its own window.", flush=True)
    webbrowser.open(url)
    serve_forever()
