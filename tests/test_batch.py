"""Describing whole folders: `launch.py describe` as a person runs it, on real files, stopped
hard and run again; and the job on a model server."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from app.batch import DescribeJob, ItemResult, Journal, job_problem, run_job
from app.config import Limits
from app.describe import description_messages
from model import RemoteEngine, RemoteEngineConfig
from tests.conftest import ROOT, ModelServer, photo, wait_until_ready

RUN_S = 240


def describe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "launch.py", "describe", *args, "--demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_S,
    )


def screenshot(path: Path) -> Path:
    image = Image.new("RGB", (640, 200), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 640, 28), fill=(40, 40, 90))
    draw.text((8, 8), "Settings - Network", fill="white")
    draw.text(
        (16, 60), "Error 0x80070005: access is denied. Try again as administrator.", fill="black"
    )
    image.save(path)
    return path


def chart(path: Path) -> Path:
    image = Image.new("RGB", (400, 300), "white")
    draw = ImageDraw.Draw(image)
    draw.line((40, 260, 380, 260), fill="black")
    draw.line((40, 20, 40, 260), fill="black")
    for n, height in enumerate((80, 150, 120, 210)):
        draw.rectangle((70 + n * 75, 260 - height, 110 + n * 75, 260), fill=(30, 90, 160))
        draw.text((72 + n * 75, 266), f"Q{n + 1}", fill="black")
    image.save(path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Real files of every sort a folder of a web site holds, and some it should not."""
    images = tmp_path / "site"
    (images / "icons").mkdir(parents=True)
    photo(480, 320).save(images / "photo.jpg", quality=90)
    screenshot(images / "screenshot.png")
    chart(images / "chart.png")
    Image.new("RGB", (1, 1), "white").save(images / "icons" / "spacer.png")
    (images / "broken.jpg").write_bytes((images / "photo.jpg").read_bytes()[:400])
    (images / "program.png").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(500))
    (images / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: not an image to describe
    return images


def test_every_file_gets_its_row_and_bad_ones_their_sentence(folder: Path, tmp_path: Path):
    out = tmp_path / "results" / "alt.csv"
    run = describe(str(folder), "--level", "alt_text", "--out", str(out))
    assert run.returncode == 1, run.stderr  # some files failed, and the run went on
    rows = {Path(row["path"]).name: row for row in csv.DictReader(out.open())}
    assert sorted(rows) == [
        "broken.jpg",
        "chart.png",
        "photo.jpg",
        "program.png",
        "screenshot.png",
        "spacer.png",
    ]
    assert rows["broken.jpg"]["error"] == "broken.jpg is not an image Loupe can read."
    assert rows["program.png"]["error"] == "program.png is not an image Loupe can read."
    for name in ("chart.png", "photo.jpg", "screenshot.png", "spacer.png"):
        row = rows[name]
        assert row["error"] == "" and row["text"] and row["level"] == "alt_text"
        assert row["model"] == "Loupe miniature (random weights)" and float(row["seconds"]) > 0
    assert "4 described, 0 already done, 2 failed" in run.stderr
    assert "6/6 images" in run.stderr and "Traceback" not in run.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o644"


def test_a_run_killed_midway_goes_on_where_it_stopped(tmp_path: Path):
    images = tmp_path / "photos"
    images.mkdir()
    for n in range(10):
        photo(200, 150, seed=n).save(images / f"photo-{n:02}.png")
    out = tmp_path / "described.jsonl"
    journal = Journal(out).path
    process = subprocess.Popen(
        [sys.executable, "launch.py", "describe", str(images), "--demo", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so the kill takes its model worker too, as a power cut would
    )
    deadline = time.monotonic() + RUN_S
    while not (journal.exists() and len(journal.read_text().splitlines()) >= 3):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = [json.loads(line) for line in out.read_text().splitlines()]  # whole, not torn
    assert 3 <= len(before) < 10

    again = describe(str(images), "--out", str(out))
    assert again.returncode == 0, again.stderr
    after = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(row["path"] for row in after) == sorted(str(p) for p in images.iterdir())
    assert len(after) == 10  # every image exactly once
    assert f"{len(before)} already done" in again.stderr
    for row in before:  # what the first run finished was not described again
        assert row in after

    forced = describe(str(images), "--out", str(out), "--force")
    assert forced.returncode == 0 and "10 described, 0 already done" in forced.stderr


def test_a_journal_line_cut_short_by_a_crash_is_left_out(tmp_path: Path):
    journal = Journal(tmp_path / "out.csv")
    journal.add(ItemResult("a.png", "brief", text="A cat."))
    with journal.path.open("a") as file:
        file.write('{"path": "b.png", "level": "br')
    assert list(journal.load()) == ["a.png"]


def test_bad_jobs_are_one_sentence(tmp_path: Path):
    assert job_problem(DescribeJob(("x",), "alt_text", tmp_path / "out.txt")) == (
        "--out takes a .csv or .jsonl file, not out.txt."
    )
    problem = job_problem(DescribeJob(("x",), "poem", tmp_path / "out.csv"))
    assert problem.startswith("The level must be one of brief, detailed, alt_text")


def test_the_context_says_what_the_image_is_for():
    [message] = description_messages(photo(), "alt_text", "product page of an outdoor shop")
    assert "The image is used here: product page of an outdoor shop." in message.text


def test_a_model_server_describes_several_images_at_once(model_server: ModelServer, tmp_path):
    for n in range(4):
        photo(160, 120, seed=n).save(tmp_path / f"{n}.png")
    engine = RemoteEngine(RemoteEngineConfig(model_server.url, model=model_server.model))
    engine.start()
    try:
        wait_until_ready(engine, 30)
        job = DescribeJob((str(tmp_path / "*.png"),), "brief", tmp_path / "out.jsonl")
        seen = []
        summary = run_job(job, engine, Limits(), workers=4, progress=lambda *a: seen.append(a))
    finally:
        engine.close()
    rows = [json.loads(line) for line in job.out.read_text().splitlines()]
    assert (summary.done, summary.failed) == (4, 0), [row["error"] for row in rows]
    assert [finished for finished, _, _ in seen] == [1, 2, 3, 4]
    rows = [json.loads(line) for line in job.out.read_text().splitlines()]
    assert [Path(row["path"]).name for row in rows] == ["0.png", "1.png", "2.png", "3.png"]
    assert all(row["text"] and row["model"] == model_server.model for row in rows)


def test_alt_text_goes_into_copies_and_the_originals_stay(folder: Path, tmp_path: Path):
    from tests.test_metadata import exiftool

    originals = {file: file.read_bytes() for file in folder.rglob("*") if file.is_file()}
    copies = tmp_path / "with-alt-text"
    out = tmp_path / "alt.jsonl"
    run = describe(
        str(folder), "--level", "alt_text", "--out", str(out),
        "--write-metadata", "--out-dir", str(copies), "--sidecar",
    )  # fmt: skip
    assert run.returncode == 1, run.stderr  # the two bad files
    rows = {Path(row["path"]).name: row for row in map(json.loads, out.read_text().splitlines())}
    for name in ("photo.jpg", "screenshot.png", "chart.png", "icons/spacer.png"):
        copy, row = copies / name, rows[Path(name).name]
        assert exiftool(copy).get("AltTextAccessibility", "") == row["alt_text"]
        with Image.open(copy) as written, Image.open(folder / name) as original:
            assert written.tobytes() == original.tobytes()  # only the metadata changed
        assert copy.with_suffix(".txt").read_text() == row["alt_text"]
    assert not (copies / "broken.jpg").exists()
    assert {file: file.read_bytes() for file in originals} == originals  # untouched


def test_writing_into_files_needs_somewhere_to_write(folder: Path, tmp_path: Path):
    out = str(tmp_path / "out.csv")
    run = describe(str(folder), "--level", "alt_text", "--out", out, "--write-metadata")
    assert run.returncode == 2 and run.stderr.strip() == (
        "--write-metadata writes into copies in --out-dir DIR, or with --in-place into the "
        "files themselves; give one of them with it."
    )
    run = describe(str(folder), "--level", "brief", "--out", out, "--sidecar")
    assert run.stderr.strip() == "Writing into the files takes the alt text: add --level alt_text."
