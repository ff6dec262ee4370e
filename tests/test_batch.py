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
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

import launch
from app.config import Limits
from app.tasks import describe_command
from app.tasks.batch import DescribeJob, image_files, job_problem, run_job
from app.tasks.batch_rows import ItemResult, Journal
from app.tasks.batch_writes import writes_problem
from app.tasks.describe import description_messages
from app.tasks.metadata import sidecar_path, write_description
from bench.samples import photo
from bench.serving import wait_until_ready
from model import Engine, RemoteEngine, RemoteEngineConfig
from tests.conftest import ROOT, ModelServer, SharedEngine

RUN_S = 240


@pytest.fixture
def describe_here(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., subprocess.CompletedProcess]:
    """`launch.py describe ... --demo` as `describe` runs it (the same flags, checks, progress,
    summary and exit code), in this process on the session's demo engine, which is loaded
    already."""
    monkeypatch.setattr(describe_command, "open_engine", lambda *_, **__: SharedEngine(engine))
    # Its log handler would outlive capsys.
    monkeypatch.setattr(describe_command, "show_log", lambda: None)

    def run(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()  # what came before
        code = launch.main(["describe", *args, "--demo"])
        said = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, said.out, said.err)

    return run


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """`launch.py describe` run in this process, which must refuse before loading the model:
    its one sentence."""
    assert launch.main(["describe", *args, "--demo"]) == 2
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and "Traceback" not in said, said
    return said.strip()


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


def test_every_file_gets_its_row_and_bad_ones_their_sentence(
    folder: Path, tmp_path: Path, describe_here
):
    out = tmp_path / "results" / "alt.csv"
    run = describe_here(str(folder), "--level", "alt_text", "--out", str(out))
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
        # The demo model's random weights may answer nothing but thinking or white space.
        assert row["error"] == "" and "text" in row and row["level"] == "alt_text"
        assert row["model"] == "Loupe miniature (random weights)" and float(row["seconds"]) > 0
    assert "4 described, 0 already done, 2 failed" in run.stderr
    assert "6/6 images" in run.stderr and "Traceback" not in run.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o644"


@pytest.mark.heavy
def test_a_run_killed_midway_goes_on_where_it_stopped(tmp_path: Path, describe_here):
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
    # The journal is written first, then the output (whole, at once): the kill may fall between.
    done = Journal(out).load()
    before = [json.loads(line) for line in out.read_text().splitlines()]  # whole, not torn
    assert 3 <= len(done) < 10 and len(done) - 1 <= len(before) <= len(done)
    assert {row["path"] for row in before} <= set(done)

    again = describe_here(str(images), "--out", str(out))
    assert again.returncode == 0, again.stderr
    after = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(row["path"] for row in after) == sorted(str(p) for p in images.iterdir())
    assert len(after) == 10  # every image exactly once
    assert f"{len(done)} already done" in again.stderr
    for row in before:  # what the first run finished was not described again
        assert row in after

    forced = describe_here(str(images), "--out", str(out), "--force")
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


def test_alt_text_goes_into_copies_and_the_originals_stay(
    folder: Path, tmp_path: Path, describe_here
):
    from tests.test_metadata import exiftool

    originals = {file: file.read_bytes() for file in folder.rglob("*") if file.is_file()}
    copies = tmp_path / "with-alt-text"
    out = tmp_path / "alt.jsonl"
    run = describe_here(
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
        assert sidecar_path(copy).read_text() == row["alt_text"]
    assert not (copies / "broken.jpg").exists()
    assert {file: file.read_bytes() for file in originals} == originals  # untouched


def test_writing_into_files_needs_somewhere_to_write(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    args = (str(folder), "--out", str(tmp_path / "out.csv"))
    assert refused(capsys, *args, "--level", "alt_text", "--write-metadata") == (
        "--write-metadata writes into copies in --out-dir DIR, or with --in-place into the "
        "files themselves; give one of them with it."
    )
    assert refused(capsys, *args, "--level", "brief", "--sidecar") == (
        "Writing into the files takes the alt text: add --level alt_text."
    )


def test_sidecars_are_named_after_the_whole_file_and_a_persons_own_files_stay(
    tmp_path: Path, describe_here
):
    images = tmp_path / "images"
    images.mkdir()
    photo(64, 48, seed=1).save(images / "b.png")
    photo(64, 48, seed=2).save(images / "b.webp")
    photo(64, 48, seed=3).save(images / "photo.txt", format="PNG")  # a PNG by its content
    (images / "b.txt").write_text("My own notes about b.")
    kept = {file: file.read_bytes() for file in images.iterdir()}
    out = tmp_path / "alt.jsonl"
    args = (str(images), "--level", "alt_text", "--out", str(out), "--sidecar")
    run = describe_here(*args)
    assert run.returncode == 1, run.stderr  # b.txt is not an image: its row says so
    rows = {Path(row["path"]).name: row for row in map(json.loads, out.read_text().splitlines())}
    assert {file: file.read_bytes() for file in kept} == kept  # nothing of the person's replaced
    for name in ("b.png", "b.webp", "photo.txt"):
        assert (images / f"{name}.txt").read_text() == rows[name]["alt_text"]
    assert not (images / "b.txt.txt").exists()

    again = describe_here(*args, "--force")  # Loupe's own sidecars: replaced when run again
    assert again.returncode == 1 and "3 described, 0 already done, 1 failed" in again.stderr


def test_a_file_in_the_way_that_loupe_did_not_write_is_refused_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    image = tmp_path / "a.png"
    photo(32, 24).save(image)
    ledger = tmp_path / "ledger.csv"
    ledger.write_text("date,amount\n2024-01-01,100\n")
    assert refused(capsys, str(image), "--out", str(ledger)) == (
        f"--out {ledger} already holds a file Loupe did not write; name another file, or add "
        "--overwrite to replace it."
    )
    assert ledger.read_text() == "date,amount\n2024-01-01,100\n"
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"path": "a.png", "mood": "sunny"}\n')
    assert "Loupe did not write" in refused(capsys, str(image), "--out", str(notes))

    sidecar = tmp_path / "a.png.txt"
    sidecar.write_text("My own caption.")
    out = str(tmp_path / "alt.csv")
    args = (str(image), "--level", "alt_text", "--out", out, "--sidecar")
    assert refused(capsys, *args) == (
        f"The sidecar {sidecar} is already there and Loupe did not write it; move it away, or "
        "add --overwrite to replace it."
    )
    copies = tmp_path / "copies"
    copies.mkdir()
    (copies / "a.png").write_bytes(image.read_bytes())
    args = (str(image), "--level", "alt_text", "--out", out, "--write-metadata")
    assert refused(capsys, *args, "--out-dir", str(copies)).startswith(
        f"The copy {copies / 'a.png'} is already there and Loupe did not write it;"
    )
    assert sidecar.read_text() == "My own caption."

    job = DescribeJob((str(image),), "alt_text", ledger, overwrite=True)
    assert writes_problem(job) is None  # the person means it
    assert writes_problem(replace(job, out=tmp_path / "x.csv", sidecar=True)) is None


def test_what_loupe_wrote_is_known_again_so_a_run_goes_on(tmp_path: Path):
    image = tmp_path / "a.png"
    photo(32, 24).save(image)
    out = tmp_path / "alt.csv"
    journal = Journal(out)
    row = ItemResult(str(image), "alt_text", alt_text="A red square.")
    journal.add(row)
    journal.write_output([row])
    copies = tmp_path / "copies"
    copies.mkdir()
    write_description(image, copies / "a.png", row.alt_text)
    sidecar_path(copies / "a.png").write_text(row.alt_text)
    sidecar_path(image).write_text(row.alt_text)
    job = DescribeJob((str(image),), "alt_text", out, force=True, sidecar=True)
    assert writes_problem(job) is None
    assert writes_problem(replace(job, out_dir=copies)) is None
    for empty in ("empty.csv", "empty.jsonl"):  # nothing to lose, e.g. made by mktemp
        (tmp_path / empty).touch()
        assert writes_problem(DescribeJob((str(image),), "brief", tmp_path / empty)) is None
    jsonl = tmp_path / "alt.jsonl"
    Journal(jsonl).write_output([row])
    assert writes_problem(DescribeJob((str(image),), "brief", jsonl)) is None

    sidecar_path(image).write_text("Edited by hand: a crimson square.")  # now the person's
    assert "Loupe did not write it" in writes_problem(job)
    write_description(image, copies / "a.png", "Another tool's alt text.")
    assert "Loupe did not write it" in writes_problem(replace(job, out_dir=copies, sidecar=False))


def test_read_only_files_and_the_originals_folder_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    images = tmp_path / "images"
    images.mkdir()
    photo(32, 24).save(images / "ro.png")
    (images / "ro.png").chmod(0o444)
    before = (images / "ro.png").read_bytes()
    out = str(tmp_path / "alt.csv")
    args = (str(images), "--level", "alt_text", "--out", out, "--write-metadata")
    assert refused(capsys, *args, "--in-place") == (
        f"{images / 'ro.png'} is read-only; Loupe leaves it as it is unless you add --overwrite."
    )
    for out_dir in (images, tmp_path):  # the images' folder, and one that holds it
        assert refused(capsys, *args, "--out-dir", str(out_dir)) == (
            f"--out-dir {out_dir} is or holds the images' folder, and the originals stay "
            "untouched: choose a folder apart from them, or --in-place to write into them."
        )
    assert "the next run would describe the copies" in refused(
        capsys, *args, "--out-dir", str(images / "with-alt-text")
    )
    assert (images / "ro.png").read_bytes() == before and sorted(images.iterdir()) == [
        images / "ro.png"
    ]
    job = DescribeJob((str(images),), "alt_text", Path(out), in_place=True, overwrite=True)
    assert writes_problem(job) is None
    read_only_out = tmp_path / "done.csv"
    Journal(read_only_out).write_output([])
    read_only_out.chmod(0o444)
    assert refused(capsys, str(images), "--out", str(read_only_out)) == (
        f"--out {read_only_out} is read-only; Loupe leaves it as it is unless you add --overwrite."
    )


def test_an_out_that_is_a_folder_or_a_write_over_an_image_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    images = tmp_path / "images"
    images.mkdir()
    photo(32, 24).save(images / "a.png")
    folder = tmp_path / "results.csv"
    folder.mkdir()
    assert refused(capsys, str(images), "--out", str(folder)) == (
        f"--out {folder} is a folder: name a .csv or .jsonl file."
    )
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "images",
        "results.csv",
    ]  # no journal, no temporary files
    assert refused(capsys, str(images), "--out", str(images / "a.png" / "out.csv")) == (
        f"--out {images / 'a.png' / 'out.csv'} cannot be written: {images / 'a.png'} is a file, "
        "not a folder."
    )

    photo(32, 24, seed=1).save(images / "a.png.txt", format="PNG")  # an image, by its content
    out = str(tmp_path / "alt.csv")
    named = (str(images / "a.png"), str(images / "a.png.txt"))
    args = (*named, "--level", "alt_text", "--out", out)
    assert refused(capsys, *args, "--sidecar", "--overwrite") == (
        f"Loupe would write over {images / 'a.png.txt'}, which this run reads or writes; "
        "rename it or write elsewhere."
    )
    copies = tmp_path / "copies"
    assert refused(capsys, *args, "--sidecar", "--write-metadata", "--out-dir", str(copies)) == (
        f"{images / 'a.png'} and {images / 'a.png.txt'} would both be written to "
        f"{copies / 'a.png.txt'}; rename one of them."
    )
    # A folder's sidecars are not images to describe; only a file named as one is.
    assert image_files((str(images),)) == [images / "a.png"]
    assert image_files((str(images / "*"),)) == [images / "a.png"]
