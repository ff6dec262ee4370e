"""What the page ships to the browser besides its components: the assets folder, the scripts
and style sheet, the keyboard shortcuts and their help dialog, the examples in an empty chat."""

from __future__ import annotations

from pathlib import Path

from .side_list import ADDRESS_PARAMETER

ASSETS = Path(__file__).resolve().parents[2] / "assets"
PUSH_TO_TALK_KEY = "F8"  # the key assets/push_to_talk.js listens for
PUSH_TO_TALK_JS = ASSETS / "push_to_talk.js"
ACCESSIBILITY_JS = ASSETS / "accessibility.js"  # live region, shortcuts, read aloud, names
ZOOM_JS = ASSETS / "zoom.js"  # marking a region by dragging over the image
PAGE_CSS = ASSETS / "page.css"
# The keys assets/accessibility.js listens for (with Alt+Shift), as the page and README list them.
SHORTCUTS = (
    ("L", "go to the latest answer"),
    ("S", "stop the answer"),
    ("R", "repeat the latest answer"),
    ("M", "go to the message box"),
    ("D", "describe the attached image (at the chosen level, else Detailed)"),
    ("H", "show these shortcuts"),
)
SHOW_HELP_JS = "document.getElementById('help-dialog')?.showModal()"
# Puts the open conversation's id in the page's address (?c=ID), without reloading.
SET_ADDRESS_JS = f"""(id) => {{
    const address = new URL(window.location.href);
    if (id) address.searchParams.set("{ADDRESS_PARAMETER}", id);
    else address.searchParams.delete("{ADDRESS_PARAMETER}");
    window.history.replaceState(null, "", address);
}}"""
# Starts the webcam's live view once Gradio has drawn its "Click to Access Webcam" button: when
# the camera opens, and again after each snapshot, so the next one is one click away.
START_WEBCAM_JS = """() => {
    const start = (tries) => {
        const button = document.querySelector("#webcam [title='grant webcam access'] button");
        if (button) button.click();
        else if (tries > 0) setTimeout(() => start(tries - 1), 100);
    };
    start(30);
}"""
LATEX = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
]
EXAMPLES = [
    {
        "text": "What does this error mean, and how do I fix it?",
        "files": [str(ASSETS / "example-error.png")],
        "icon": str(ASSETS / "example-error.png"),
    },
    {
        "text": "Describe this photo.",
        "files": [str(ASSETS / "example-photo.jpg")],
        "icon": str(ASSETS / "example-photo.jpg"),
    },
]


def help_dialog() -> str:
    """The keyboard shortcuts, in a dialog the Shortcuts button (or Alt+Shift+H) opens."""
    rows = "".join(
        f"<tr><td><kbd>Alt+Shift+{key}</kbd></td><td>{what}</td></tr>" for key, what in SHORTCUTS
    )
    return (
        '<dialog id="help-dialog" aria-labelledby="help-title">'
        '<h2 id="help-title">Keyboard shortcuts</h2>'
        f"<table><tbody>{rows}</tbody></table>"
        "<p>Enter sends; Shift+Enter starts a new line.</p>"
        '<form method="dialog"><button id="help-close">Close</button></form>'
        "</dialog>"
    )


def page_js(desktop: bool) -> str:
    """The page's script for launch(js=): the accessibility script, plus push-to-talk on the
    desktop. Each file is one arrow function; this calls them in turn."""
    scripts = [ACCESSIBILITY_JS, ZOOM_JS] + ([PUSH_TO_TALK_JS] if desktop else [])
    calls = "\n".join(f"({path.read_text().strip()})();" for path in scripts)
    return f"() => {{\n{calls}\n}}"
