"""The page's Batch view (/batch), in real Chromium on `launch.py --demo`: images and a zip
dropped, progress, Stop, an edited cell, and the downloads (CSV, and a zip of the images with
their alt text, read back with exiftool); and the zip intake's refusals, without a browser."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.batch_view import MAX_BATCH_FILES, BatchProblem, unpack
from app.config import Limits
from tests.conftest import photo
from tests.test_accessibility import assert_no_blocking_violations
from tests.test_batch import chart, screenshot
from tests.test_browser import browser, shoot, wait_until_idle  # noqa: F401 (browser: fixture)
from tests.test_metadata import exiftool

RUN_TIMEOUT_MS = 240_000
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
def batch_page(browser, demo_app):  # noqa: F811 (browser is the fixture)
    url, _ = demo_app
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#message textarea")
    page.click("#batch-link")  # from the chat's sidebar
    page.wait_for_selector("#batch-start")
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


def test_drop_describe_edit_and_download(batch_page, demo_app, uploads, tmp_path):
    page, (url, _) = batch_page, demo_app
    start(page, uploads, "Alt text", r"\d+\/6 images")  # six files: the hidden ones left out
    assert wait_for_end(page).startswith("Done: 4 described, 0 already done, 2 failed")
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
    by_file = {Path(row["path"]).name: row for row in csv.DictReader(results.open())}
    assert by_file["tent.jpg"]["alt_text"] == EDITED_ALT
    assert by_file["program.png"]["error"]
    assert len(by_file) == 6

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
    wait_until_idle(url)


def test_stop_ends_the_run_and_keeps_what_was_done(batch_page, demo_app, tmp_path):
    page, (url, _) = batch_page, demo_app
    files = []
    for n in range(12):
        files.append(tmp_path / f"photo-{n:02}.jpg")
        photo(320, 240, seed=n).save(files[-1])
    start(page, files, "Detailed", r"^[1-9]\d*\/12 images")  # some done, not all
    page.click("#batch-stop")
    started = time.monotonic()
    ended = wait_for_end(page)
    assert time.monotonic() - started < 20  # what ran is cancelled, not waited for
    assert ended.startswith("Stopped: ")
    assert ended.endswith("of 12 images done; the rest were left.")
    done = int(ended.split()[1])
    assert 1 <= done < 12
    assert len(table(page)) == done
    assert page.locator("#batch-start").is_enabled()
    assert page.locator("#batch-stop").is_disabled()
    assert httpx.get(f"{url}/health").json()["engine"]["queue"] == 0
    wait_until_idle(url)


def test_start_without_images_says_so(batch_page):
    batch_page.click("#batch-start")
    batch_page.wait_for_function(
        "() => document.querySelector('#batch-progress').innerText.includes('Add images')"
    )
    assert progress(batch_page) == "Add images, or a zip of them, first."


# -- the zip intake -------------------------------------------------------------------------


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def test_unpack_keeps_folders_and_leaves_hidden_files_out(tmp_path: Path) -> None:
    archive = zip_of(
        tmp_path / "a.zip",
        {"x/one.png": b"1", "two.png": b"2", "x/.hidden": b"3", "__MACOSX/x/._one.png": b"4"},
    )
    unpack(archive, tmp_path / "out", Limits())
    out = tmp_path / "out"
    found = sorted(path.relative_to(out).as_posix() for path in out.rglob("*"))
    assert found == ["two.png", "x", "x/one.png"]


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ({"../evil.png": b"1"}, "names a file outside itself"),
        ({"/etc/evil.png": b"1"}, "names a file outside itself"),
        ({f"{n}.png": b"" for n in range(MAX_BATCH_FILES + 1)}, f"up to {MAX_BATCH_FILES}"),
    ],
)
def test_unpack_refuses_in_one_sentence(tmp_path: Path, members: dict, says: str) -> None:
    archive = zip_of(tmp_path / "bad.zip", members)
    with pytest.raises(BatchProblem, match=says):
        unpack(archive, tmp_path / "out", Limits())
    assert not (tmp_path / "evil.png").exists()


def test_unpack_refuses_a_member_over_the_size_limit(tmp_path: Path) -> None:
    archive = zip_of(tmp_path / "big.zip", {"big.png": bytes(2 * 1024 * 1024)})
    with pytest.raises(BatchProblem, match="over the 1 MB limit"):
        unpack(archive, tmp_path / "out", Limits(max_file_mb=1))


def test_a_damaged_zip_is_refused(tmp_path: Path) -> None:
    archive = zip_of(tmp_path / "ok.zip", {"a.png": b"123"})
    archive.write_bytes(archive.read_bytes()[:-30])
    with pytest.raises(BatchProblem, match="could not be unpacked|ok.zip"):
        unpack(archive, tmp_path / "out", Limits())
