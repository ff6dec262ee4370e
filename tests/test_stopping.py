"""Ctrl+C as a terminal sends it, to the whole process group (Loupe, its fork server and its
model worker): `describe` and the app stop quietly, and nothing restarts or reloads the model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.tasks.batch_rows import Journal
from bench.samples import photo
from model.local_engine import WORKER_EXIT_S
from tests.conftest import AS_IN_A_TERMINAL, ROOT

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
        **AS_IN_A_TERMINAL,
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


def test_ctrl_c_while_the_model_loads_stops_describe_at_once(miniature: Path, tmp_path: Path):
    photo(200, 150).save(tmp_path / "photo.png")
    out = tmp_path / "described.csv"
    process = subprocess.Popen(
        [sys.executable, "launch.py", "describe", str(tmp_path), "--demo", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **AS_IN_A_TERMINAL,
    )
    said = []
    for line in process.stderr:  # the worker's first line: it has started loading
        said.append(line)
        if line.startswith("Looking for the model weights"):
            break
    os.killpg(process.pid, signal.SIGINT)  # Ctrl+C
    stopped = time.monotonic()
    rest = process.communicate(timeout=60)[1]
    said.append(rest)
    assert process.returncode == 130, said
    assert "Stopped before the model had loaded; nothing was described." in rest
    assert "Traceback" not in "".join(said), said
    assert time.monotonic() - stopped < WORKER_EXIT_S  # the loading worker is not waited for
