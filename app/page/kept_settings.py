"""Settings kept per browser: the Settings panel's choices and the describe level are saved in the
browser's local storage as they change, and put back when the page opens, so that a reload or a
restart of Loupe keeps them; Reset to defaults puts the defaults back. Each browser keeps its own.

Gradio's BrowserState encrypts what it keeps with a secret; Loupe keeps that secret in the data
folder, so that it outlives a restart (a new secret would forget every browser's settings).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

import gradio as gr

from .settings_panel import SettingsPanel

STORAGE_KEY = "loupe-settings"
SECRET_FILE = "browser-settings.key"


def keep_settings(
    page: gr.Blocks, panel: SettingsPanel, describe_level: gr.Radio, data_dir: Path
) -> None:
    """Wire the keeping: each change saved, the saved values put back as the page loads (a value
    the controls no longer offer is left at its default), Reset to defaults."""
    controls = {
        **panel.settings,
        "voice_route": panel.voice_route,
        "auto_read": panel.auto_read,
        "read_rate": panel.read_rate,
        "describe_level": describe_level,
    }
    names, components = list(controls), list(controls.values())
    defaults = [control.value for control in components]
    kept = gr.BrowserState({}, storage_key=STORAGE_KEY, secret=browser_secret(data_dir))

    def restore(saved: Any) -> list:
        saved = saved if isinstance(saved, dict) else {}
        return [
            allowed(controls[name], saved[name]) if name in saved else gr.skip() for name in names
        ]

    page.load(restore, kept, components, api_visibility="private", show_progress="hidden")
    gr.on(
        [control.change for control in components],
        lambda *values: dict(zip(names, values, strict=True)),
        components,
        kept,
        api_visibility="private",
        show_progress="hidden",
        queue=False,
    )
    panel.reset.click(lambda: defaults, None, components, api_visibility="private", queue=False)


def allowed(control: gr.components.Component, value: Any) -> Any:
    """`value` if `control` can take it (a kept value may be from an older Loupe, or edited),
    else gr.skip(): the control keeps its default."""
    if isinstance(control, (gr.Radio, gr.Dropdown)):
        offered = [choice[1] if isinstance(choice, tuple) else choice for choice in control.choices]
        return value if value in offered else gr.skip()
    if isinstance(control, gr.Slider):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return value if number and control.minimum <= value <= control.maximum else gr.skip()
    if isinstance(control, gr.Checkbox):
        return value if isinstance(value, bool) else gr.skip()
    return value if isinstance(value, str) else gr.skip()


def browser_secret(data_dir: Path) -> str:
    """The secret BrowserState encrypts with, made once per data folder (readable by its owner
    alone)."""
    path = Path(data_dir) / SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another Loupe on this folder made it first
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(secret)
    return secret
