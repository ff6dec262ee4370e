"""The page's Batch view (/batch), in real Chromium on `launch.py --demo`: images and a zip
dropped, progress, Stop, an edited cell, and the downloads (CSV, and a zip of the images with
their alt text, read back with exiftool), and the run's files removed once nothing needs them;
and the intake's refusals (zip bombs, names no disk takes, a full disk), without a browser."""

from __future__ import annotations

import csv
import io
import os
import shutil
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.config import Limits
from app.intake.archive import (
    FREE_DISK_RESERVE_MB,
    KEEP_RUN_S,
    MAX_BATCH_FILES,
    MB,
    BatchProblem,
    check_free_disk,
    remove_old_runs,
    unpack,
)
from bench.samples import photo
from tests.test_accessibility import assert_no_blocking_violations
from tests.test_batch import chart, screenshot
from tests.test_browser import shoot, wait_until_saved
from tests.test_metadata import exiftool

RUN_TIMEOUT_MS = 240_000
FILES_GONE_S = 30  # a closed page is noticed by Gradio's heartbeat, every 15 s
EDITED_ALT = "A red tent pitched by a lake at dawn"


@pytest.fixture
def uploads(tmp_path: Path) -> list[Path]:
    """Two loose images, and a zip holding a folder of more, a broken JPEG and a program
    renamed .png (both get their sentence), and macOS's hidden files (left out)."""
    loose = tmp_path / "loose"
    loose.mkdir()
    photo(480, 320, seed=1).save(loose / "tent.jpg", quality=90)
    screenshot(loose / "error.png")
    archive = tmp_path / "site.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("site/charts/sales.png", chart(tmp_path / "sales.png").read_bytes())
        buffer = io.BytesIO()
        photo(200, 200, seed=2).save(buffer, "WEBP", lossless=True)
        bundle.writestr("site/lake.webp", buffer.getvalue())
        bundle.writestr("site/broken.jpg", (loose / "tent.jpg").read_bytes()[:400])
        bundle.writestr("site/program.png", b"\x7fELF\x02\x01\x01" + bytes(500))
        bundle.writestr("__MACOSX/site/._lake.webp", b"\0\5\26\7")
        bundle.writestr("site/.DS_Store", b"\0\0\0\1Bud1")
    return [loose / "tent.jpg", loose / "error.png", archive]


@pytest.fixture
def batch_page(browser, demo_app):
    url, _ = demo_app
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#message textarea")
    page.click("#batch-link")  # from the chat's sidebar
    page.wait_for_selector("#batch-start")
    page.wait_for_function("!!window.loupe")  # the page's script runs here too, and repairs
    yield page
    context.close()


def progress(page) -> str:
    return page.inner_text("#batch-progress").strip()


def wait_for_end(page) -> str:
    page.wait_for_function(
        "() => /^(Done|Stopped)/.test(document.querySelector('#batch-progress').innerText)",
        timeout=RUN_TIMEOUT_MS,
    )
    return progress(page)


def table(page) -> list[list[str]]:
    """The results table's rows as shown (long cells cut short), scrolled through: the table
    draws only the rows in view."""
    return page.evaluate(
        """async () => {
            const viewport = document.querySelector('#batch-results .virtual-table-viewport');
            const rows = new Map();
            for (let top = 0; ; top += viewport.clientHeight / 2) {
                viewport.scrollTop = top;
                await new Promise((settled) => requestAnimationFrame(() => setTimeout(settled)));
                document.querySelectorAll('#batch-results [role=row].virtual-row').forEach(
                    (row) => rows.set(Number(row.dataset.index), [
                        ...row.querySelectorAll('[role=gridcell]')
                    ].map((cell) => cell.innerText.trim())));
                if (top >= viewport.scrollHeight) break;
            }
            viewport.scrollTop = 0;
            return [...rows.keys()].sort((a, b) => a - b).map((index) => rows.get(index));
        }"""
    )


def download(page, button: str, tmp_path: Path) -> Path:
    """Press a Download button, then save the file the Downloads box offers."""
    page.click(button)
    link = page.locator("#batch-downloads a[download]").first
    link.wait_for(timeout=30_000)
    with page.expect_download() as waiting:
        link.click()
    target = tmp_path / waiting.value.suggested_filename
    waiting.value.save_as(target)
    return target


def runs(home: Path) -> set[Path]:
    """The Batch view's run folders in the demo app's data folder."""
    folder = home / ".loupe" / "batches"
    return set(folder.iterdir()) if folder.is_dir() else set()


def gone(path: Path, within_s: float = 10) -> bool:
    deadline = time.monotonic() + within_s
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not path.exists()


def start(page, files: list[Path], level: str, counted: str) -> None:
    """Add the files, choose the level, Start, and wait until the progress line matches
    `counted` (a regular expression)."""
    page.set_input_files("#batch-files input[type=file]", [str(path) for path in files])
    page.get_by_label(level, exact=True).check()
    page.click("#batch-start")
    page.wait_for_function(
        "(p) => new RegExp(p).test(document.querySelector('#batch-progress').innerText)",
        arg=counted,
        timeout=RUN_TIMEOUT_MS,
    )


def test_drop_describe_edit_and_download(batch_page, demo_app, home, uploads, tmp_path):
    page, (url, _) = batch_page, demo_app
    before = runs(home)
    start(page, uploads, "Alt text", r"\d+\/6 images")  # six files: the hidden ones left out
    assert wait_for_end(page).startswith("Done: 4 described, 0 already done, 2 failed")
    (run,) = runs(home) - before
    # Only the zip of images with their alt text needs images now: the described ones.
    assert gone(run / "images" / "site" / "program.png")
    assert (run / "images" / "tent.jpg").exists()
    page.wait_for_function(  # the gallery shows copies of its own
        "() => [...document.querySelectorAll('#batch-images img')]"
        ".filter((image) => image.complete && image.naturalWidth > 0).length >= 4"
    )
    shoot(page, "batch-done")
    assert page.get_attribute("#batch-progress", "role") == "status"  # read out as it changes
    assert_no_blocking_violations(page, "the Batch view with results")

    rows = {row[0]: row for row in table(page)}
    assert set(rows) == {
        "tent.jpg",
        "error.png",
        "site/charts/sales.png",
        "site/lake.webp",
        "site/broken.jpg",
        "site/program.png",
    }
    assert rows["site/broken.jpg"][-1] and rows["site/program.png"][-1]  # their sentences
    assert not rows["tent.jpg"][-1]
    assert page.locator("#batch-images img").count() == 6

    # Correct the tent's alt text in the table, as a person would: select the cell and type.
    tent = page.locator("#batch-results [role=row]", has_text="tent.jpg")
    tent.locator("[role=gridcell]").nth(2).dblclick()
    editor = page.locator("#batch-results [role=gridcell] textarea").first
    editor.fill(EDITED_ALT)
    editor.press("Enter")
    page.wait_for_function(
        "(text) => document.querySelector('#batch-results').innerText.includes(text)",
        arg=EDITED_ALT,
    )

    results = download(page, "#batch-csv", tmp_path)
    by_file = {row["path"]: row for row in csv.DictReader(results.open())}
    assert set(by_file) == set(rows)  # named as uploaded, never where the run keeps them
    assert by_file["tent.jpg"]["alt_text"] == EDITED_ALT
    assert by_file["site/program.png"]["error"]

    copies = download(page, "#batch-zip", tmp_path / "zip")
    unpacked = tmp_path / "copies"
    with zipfile.ZipFile(copies) as bundle:
        assert sorted(bundle.namelist()) == [
            "error.png",
            "site/charts/sales.png",
            "site/lake.webp",
            "tent.jpg",
        ]  # the failed files are left out
        bundle.extractall(unpacked)
    assert exiftool(unpacked / "tent.jpg")["AltTextAccessibility"] == EDITED_ALT
    with Image.open(unpacked / "tent.jpg") as written, Image.open(uploads[0]) as original:
        assert written.tobytes() == original.tobytes()
    wait_until_saved(url)


def six_photos(folder: Path) -> list[Path]:
    """Enough images that Stop comes while some are still to describe."""
    files = [folder / f"photo-{n:02}.jpg" for n in range(6)]
    for n, file in enumerate(files):
        photo(320, 240, seed=n).save(file)
    return files


def test_stop_keeps_what_was_done_and_start_goes_on_with_the_rest(
    batch_page, demo_app, home, tmp_path
):
    page, (url, _) = batch_page, demo_app
    files = six_photos(tmp_path)
    before = runs(home)
    start(page, files, "Detailed", r"^[1-9]\d*\/6 images")  # some done, not all
    (run,) = runs(home) - before
    page.click("#batch-stop")
    started = time.monotonic()
    ended = wait_for_end(page)
    assert time.monotonic() - started < 20  # what ran is cancelled, not waited for
    assert ended.startswith("Stopped: ")
    assert ended.endswith("of 6 images done; Start goes on with the rest.")
    done = int(ended.split()[1])
    assert 1 <= done < 6
    assert len(table(page)) == done
    assert page.locator("#batch-start").is_enabled()
    assert page.locator("#batch-stop").is_disabled()
    assert page.locator("#batch-start-over").is_visible()
    assert httpx.get(f"{url}/health").json()["engine"]["queue"] == 0
    assert len(list((run / "images").iterdir())) == 6  # kept for Start to go on with

    page.click("#batch-start")  # the same images, level and context: the run goes on
    page.wait_for_function(
        "() => !document.querySelector('#batch-progress').innerText.startsWith('Stopped')"
    )
    ended = wait_for_end(page)
    assert ended.startswith(f"Done: {6 - done} described, {done} already done, 0 failed"), ended
    assert runs(home) - before == {run}  # the same run, not a new one
    assert len(table(page)) == 6
    assert not page.locator("#batch-start-over").is_visible()
    wait_until_saved(url)
    assert gone(run / "images")  # no download of this level needs them
    page.context.close()  # the page is closed: its run's folder goes, results and all
    assert gone(run, FILES_GONE_S)


def test_start_over_describes_every_image_again(batch_page, demo_app, home, tmp_path):
    page, (url, _) = batch_page, demo_app
    files = six_photos(tmp_path)
    before = runs(home)
    start(page, files, "Detailed", r"^[1-9]\d*\/6 images")
    (stopped,) = runs(home) - before
    page.click("#batch-stop")
    assert wait_for_end(page).startswith("Stopped: ")
    page.click("#batch-start-over")
    page.wait_for_function(  # all six again, in a run of its own
        "() => /^(Describing 6 |\\d+\\/6 )images/.test("
        "document.querySelector('#batch-progress').innerText)"
    )
    (fresh,) = runs(home) - before - {stopped}
    assert gone(stopped)  # the stopped run's results left the page with the new one
    page.click("#batch-stop")
    assert wait_for_end(page).startswith("Stopped: ")
    assert fresh.exists()
    wait_until_saved(url)


def test_start_without_images_says_so(batch_page):
    # Empty, the upload box's name holds the words it shows ("Drop File Here ...").
    assert_no_blocking_violations(batch_page, "the Batch view, empty")
    batch_page.click("#batch-start")
    batch_page.wait_for_function(
        "() => document.querySelector('#batch-progress').innerText.includes('Add images')"
    )
    assert progress(batch_page) == "Add images, or a zip of them, first."


# -- the intake ----------------------------------------------------------------------------


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def zip_of_zeros(path: Path, members: int, size: int) -> Path:
    """A zip bomb: `members` files of `size` zero bytes each, deflated once and stored again
    for each member (deflating gigabytes in the test would take minutes)."""
    zeros = bytes(size)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate, as zips hold it
    packed, crc = packer.compress(zeros) + packer.flush(), zlib.crc32(zeros)
    with zipfile.ZipFile(path, "w") as bundle:
        for n in range(members):
            member = zipfile.ZipInfo(f"zeros-{n:02}.png")
            member.compress_type = zipfile.ZIP_DEFLATED
            member.CRC, member.file_size, member.compress_size = crc, size, len(packed)
            member.header_offset = bundle.fp.tell()
            bundle.fp.write(member.FileHeader() + packed)
            bundle.filelist.append(member)
            bundle.NameToInfo[member.filename] = member
        bundle.start_dir = bundle.fp.tell()
    return path


def patched(archive: Path, header: bytes, offset: int, value: bytes) -> Path:
    """`archive` with `value` written at `offset` into every local and central header of the
    kind `header` names: a zip as a hostile tool could make it."""
    data = bytearray(archive.read_bytes())
    at = data.find(header)
    while at >= 0:
        data[at + offset : at + offset + len(value)] = value
        at = data.find(header, at + 1)
    archive.write_bytes(bytes(data))
    return archive


def written(folder: Path) -> int:
    return sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())


def test_unpack_keeps_folders_and_leaves_hidden_files_out(tmp_path: Path) -> None:
    archive = zip_of(
        tmp_path / "a.zip",
        {"x/one.png": b"1", "two.png": b"2", "x/.hidden": b"3", "__MACOSX/x/._one.png": b"4"},
    )
    unpack([archive], tmp_path / "out", Limits())
    out = tmp_path / "out"
    found = sorted(path.relative_to(out).as_posix() for path in out.rglob("*"))
    assert found == ["two.png", "x", "x/one.png"]


def test_files_of_one_name_get_names_of_their_own(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "tent.jpg").write_bytes(folder.encode())
    archive = zip_of(tmp_path / "more.zip", {"Tent.jpg": b"c", "x/tent.jpg": b"d"})
    out = tmp_path / "out"
    unpack([tmp_path / "a" / "tent.jpg", tmp_path / "b" / "tent.jpg", archive], out, Limits())
    found = {path.relative_to(out).as_posix(): path.read_bytes() for path in out.rglob("*.jpg")}
    # Tent.jpg and tent.jpg are one file on macOS's and Windows's disks.
    assert found == {"tent.jpg": b"a", "tent-2.jpg": b"b", "Tent-3.jpg": b"c", "x/tent.jpg": b"d"}


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ({"../evil.png": b"1"}, "names a file outside itself"),
        ({"/etc/evil.png": b"1"}, "names a file outside itself"),
        ({f"{n}.png": b"" for n in range(MAX_BATCH_FILES + 1)}, f"up to {MAX_BATCH_FILES}"),
        ({f"{'x' * 296}.png": b"1"}, "^x{59}… in bad.zip has a name longer than files can have"),
        ({"a.png": b"1", "a.png/b.png": b"2"}, "^“a.png” is both a file and a folder in"),
        ({"a/b.png": b"1", "A": b"2"}, "^“A” is both a file and a folder in what was sent;"),
    ],
)
def test_unpack_refuses_in_one_sentence(tmp_path: Path, members: dict, says: str) -> None:
    archive = zip_of(tmp_path / "bad.zip", members)
    with pytest.raises(BatchProblem, match=says):
        unpack([archive], tmp_path / "out", Limits())
    assert not (tmp_path / "out").exists()  # refused before anything was written
    assert not (tmp_path / "evil.png").exists()


def test_a_zip_listing_too_many_files_is_refused_before_its_list_is_read(tmp_path: Path) -> None:
    # 60,000 directory entries of one empty file (3 MB): reading the list takes 50 MB or more.
    name, entries = b"a.png", 60_000
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0)
    central = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0, 0, 0
    )
    listing = (central + name) * entries
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, entries, entries, len(listing), len(local + name), 0
    )
    archive = tmp_path / "many.zip"
    archive.write_bytes(local + name + listing + end)
    tracemalloc.start()
    try:
        with pytest.raises(BatchProblem, match="^many.zip lists 60,000 files; the Batch view"):
            unpack([archive], tmp_path / "out", Limits())
        peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    assert peak_mb < 5, peak_mb


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """3 MB that unpack to 3 GB: each member is under the limit for one file, not all."""
    archive = zip_of_zeros(tmp_path / "bomb.zip", members=30, size=99 * MB)
    assert archive.stat().st_size < 4 * MB
    with pytest.raises(BatchProblem) as refusal:
        unpack([archive], tmp_path / "out", Limits())
    assert str(refusal.value) == (
        "These files come to 2,970 MB unpacked; the Batch view takes up to 2,048 MB at once "
        "(launch.py describe takes any amount)."
    )
    assert not (tmp_path / "out").exists()


def test_files_over_the_limit_together_are_refused_across_uploads(tmp_path: Path) -> None:
    first = zip_of_zeros(tmp_path / "first.zip", members=600, size=1000)
    second = zip_of_zeros(tmp_path / "second.zip", members=600, size=1000)
    with pytest.raises(BatchProblem, match=f"That is 1200 files; .* up to {MAX_BATCH_FILES}"):
        unpack([first, second], tmp_path / "out", Limits())
    third = zip_of_zeros(tmp_path / "third.zip", members=400, size=2000)
    with pytest.raises(BatchProblem, match="come to 1 MB unpacked; .* up to 1 MB"):
        unpack([first, third], tmp_path / "out", Limits(max_batch_mb=1))  # 1,000 files
    assert not (tmp_path / "out").exists()


def test_unpack_refuses_a_member_over_the_size_limit(tmp_path: Path) -> None:
    archive = zip_of(tmp_path / "big.zip", {"big.png": bytes(2 * 1024 * 1024)})
    with pytest.raises(BatchProblem, match="big.png in big.zip is over the 1 MB limit"):
        unpack([archive], tmp_path / "out", Limits(max_file_mb=1))


def test_a_member_holding_more_than_its_zip_declares_writes_no_more(tmp_path: Path) -> None:
    archive = zip_of_zeros(tmp_path / "liar.zip", members=1, size=MB)
    patched(archive, b"PK\x01\x02", 24, struct.pack("<I", 1000))  # central: 1,000 bytes
    patched(archive, b"PK\x03\x04", 22, struct.pack("<I", 1000))  # local header: the same
    with pytest.raises(BatchProblem, match="^zeros-00.png in liar.zip could not be unpacked"):
        unpack([archive], tmp_path / "out", Limits())
    assert written(tmp_path / "out") <= 1000


def test_an_encrypted_member_is_named_in_plain_words(tmp_path: Path) -> None:
    archive = zip_of(tmp_path / "locked.zip", {"site/a.png": b"1"})
    patched(archive, b"PK\x01\x02", 8, b"\x01")  # flags: encrypted
    patched(archive, b"PK\x03\x04", 6, b"\x01")
    with pytest.raises(BatchProblem) as refusal:
        unpack([archive], tmp_path / "out", Limits())
    assert str(refusal.value) == (
        "site/a.png in locked.zip is encrypted; unpack it with its password, then add the images."
    )


def test_a_damaged_zip_is_refused(tmp_path: Path) -> None:
    archive = zip_of(tmp_path / "ok.zip", {"a.png": b"123"})
    archive.write_bytes(archive.read_bytes()[:-30])
    with pytest.raises(BatchProblem, match="could not be unpacked|ok.zip"):
        unpack([archive], tmp_path / "out", Limits())


def test_files_that_would_fill_the_disk_are_refused(tmp_path: Path, monkeypatch) -> None:
    free = shutil.disk_usage(tmp_path).free
    check_free_disk(tmp_path / "not" / "yet", 0)  # a folder to come: its disk is asked
    with pytest.raises(BatchProblem, match="MB free \\(it keeps 1,024 MB\\); free some space"):
        check_free_disk(tmp_path / "not" / "yet", free - FREE_DISK_RESERVE_MB * MB + MB)
    # unpack asks before writing: on a disk with 1 MB more than the reserve, 2 MB are refused.
    small = shutil.disk_usage(tmp_path)._replace(free=(FREE_DISK_RESERVE_MB + 1) * MB)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: small)
    archive = zip_of(tmp_path / "two.zip", {"a.png": bytes(MB), "b.png": bytes(MB)})
    with pytest.raises(BatchProblem, match="need 2 MB unpacked and .* has 1,025 MB free"):
        unpack([archive], tmp_path / "out", Limits())
    assert not (tmp_path / "out").exists()


def test_runs_no_page_holds_are_removed_after_a_day(tmp_path: Path) -> None:
    now = time.time()
    runs = {name: tmp_path / name for name in ("old", "held", "recent")}
    for name, run in runs.items():
        (run / "images").mkdir(parents=True)
        (run / "images" / "a.png").write_bytes(b"1")
        age = KEEP_RUN_S + 60 if name != "recent" else KEEP_RUN_S - 60
        os.utime(run, (now - age, now - age))
    remove_old_runs(tmp_path, [runs["held"]], now)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["held", "recent"]
