"""Desktop mode: the page in its own window, and screen capture into the next message."""

from __future__ import annotations

import logging
import math
import tempfile
import webbrowser
from collections.abc import Callable
from typing import Any

from PIL import Image

from .errors import refused
from .media import with_file

WINDOW_TITLE = "Loupe"


def capture_screen(value: dict | None, max_image_mp: float) -> Any:
    """Grab the whole screen into the message box (needs a desktop session); a screen larger
    than the image limit (an 8K display is 33 megapixels) is scaled down to fit it."""
    from PIL import ImageGrab

    try:
        shot = ImageGrab.grab()
    except OSError as exc:  # no display, or the platform's grabber is missing
        raise refused(f"The screen could not be captured: {exc}.") from None
    scale = math.sqrt(max_image_mp * 1e6 / (shot.width * shot.height))
    if scale < 1:
        shot = shot.resize((int(shot.width * scale), int(shot.height * scale)), Image.LANCZOS)
    with tempfile.NamedTemporaryFile(prefix="screen-", suffix=".png", delete=False) as file:
        shot.save(file, format="PNG")
    return with_file(value, file.name)


def open_window(url: str, serve_forever: Callable[[], None]) -> None:
    """Show the page in a native window when pywebview can make one, else in the browser.

    pywebview needs GTK or Qt bindings on Linux (see the README); without them, or without
    pywebview, the page opens in the browser and the console says why in one sentence.
    pywebview must own the main thread, so the server keeps serving from its own threads
    until the window closes; in the browser case `serve_forever` blocks instead.
    """
    try:
        import webview
        from webview.errors import WebViewException
        from webview.guilib import initialize
    except ImportError:
        in_browser(url, serve_forever, "pywebview is not installed")
        return
    # pywebview logs a traceback for each toolkit it fails to load; the one sentence says it.
    toolkit_log = logging.getLogger("pywebview")
    toolkit_log.disabled = True
    try:
        initialize()  # finds GTK or Qt, as webview.start() would, or raises
    except WebViewException:
        in_browser(url, serve_forever, "pywebview finds neither GTK nor Qt bindings here")
        return
    finally:
        toolkit_log.disabled = False
    webview.create_window(WINDOW_TITLE, url, width=1200, height=900)
    webview.start()


def in_browser(url: str, serve_forever: Callable[[], None], why: str) -> None:
    """The desktop page in the browser instead of its own window, saying why."""
    print(f"{why}, so Loupe opens in your browser instead of its own window.", flush=True)
    webbrowser.open(url)
    serve_forever()
