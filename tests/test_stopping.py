"""Ctrl+C as a terminal sends it, to the whole process group (Loupe, its fork server and its
model worker): `describe` and the app stop quietly, and nothing restarts or reloads the model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.batch import Journal
from tests.conftest import ROOT, photo

RUN_S = 240


def test_ctrl_c_stops_describe_quietly_without_reloading_the_model(miniature: Path, tmp_path: Path):
    images = tmp_path / "photos"
    images.mkdir()
    for n in range(8):
        photo(200, 150, seed=n).save(images / f"photo-{n}.png")
    out = tmp_path / "described.csv"
    process = subprocess.Popen(
        [sys.executable, "launch.py", "describe", str(images), "--demo", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    journal = Journal(out).path
    deadline = time.monotonic() + RUN_S
    while not (journal.exists() and journal.read_text().count("\n") >= 1):  # mid-run
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl+C
    _, said = process.communicate(timeout=60)
    assert process.returncode == 130, said
    assert "Stopped. What was finished is in" in said
    assert "Traceback" not in said and "restarting" not in said, said
    assert said.count("Loading weights: 100%") == 1, said  # loaded once, never again
