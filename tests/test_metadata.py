"""Alt text written into JPEG, PNG and WebP files, read back by a second tool (ExifTool)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from app.tasks.atomic_file import replace_atomically
from app.tasks.metadata import (
    MetadataError,
    alt_text_in,
    sidecar_path,
    write_description,
    write_sidecar,
)

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("jpg", "png", "webp")
ALT = "Café — 東京, \"quoted\" <b> & 'apostrophe'"
LONG = "A bar chart: sales rose from 3 to 9 units a month.\nSecond line — ünïcödé, 東京."
ORIENTATION = 0x0112
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def make_image(folder: Path, extension: str) -> Path:
    """A small real image with an ICC profile, and EXIF orientation where the format has EXIF
    in PIL (JPEG, WebP); the pixels vary so that a re-encode would show."""
    image = Image.new("RGB", (48, 32))
    image.putdata([(x * 5, y * 7, (x * y) % 256) for y in range(32) for x in range(48)])
    path = folder / f"photo.{extension}"
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    if extension == "jpg":
        image.save(path, quality=85, exif=exif, icc_profile=ICC)
    elif extension == "png":
        image.save(path, icc_profile=ICC)
    else:
        image.save(path, lossless=True, exif=exif, icc_profile=ICC)
    return path


def exiftool(path: Path) -> dict[str, str]:
    """The three fields as ExifTool reads them; absent fields are left out."""
    assert shutil.which("exiftool"), (
        "exiftool is needed: ./test.sh installs Debian's libimage-exiftool-perl"
    )
    result = subprocess.run(
        [
            "exiftool", "-j", "-charset", "UTF8",
            "-XMP-iptcCore:AltTextAccessibility", "-XMP-iptcCore:ExtDescrAccessibility",
            "-XMP-dc:Description", str(path),
        ],
        capture_output=True, text=True, encoding="utf-8", check=True, timeout=30,
    )  # fmt: skip
    (fields,) = json.loads(result.stdout)
    fields.pop("SourceFile")
    return {key: str(value) for key, value in fields.items()}


def assert_same_image(original: Path, written: Path) -> None:
    """The same pixels, mode and size, and the same ICC profile and EXIF orientation."""
    with Image.open(original) as a, Image.open(written) as b:
        assert (a.format, a.mode, a.size) == (b.format, b.mode, b.size)
        assert a.tobytes() == b.tobytes()
        assert b.info.get("icc_profile") == ICC
        assert a.getexif().get(ORIENTATION) == b.getexif().get(ORIENTATION)


@pytest.mark.parametrize("extension", FORMATS)
def test_copy_has_the_fields_same_pixels_and_original_untouched(
    tmp_path: Path, extension: str
) -> None:
    source = make_image(tmp_path, extension)
    before = source.read_bytes()
    target = tmp_path / f"described.{extension}"
    write_description(source, target, ALT, LONG)
    assert source.read_bytes() == before
    assert exiftool(target) == {
        "AltTextAccessibility": ALT,
        "ExtDescrAccessibility": LONG,
        "Description": ALT,
    }
    assert_same_image(source, target)
    if extension != "png":  # PIL writes no EXIF into PNG
        with Image.open(target) as image:
            assert image.getexif().get(ORIENTATION) == 6


@pytest.mark.parametrize("extension", FORMATS)
def test_in_place_and_rewrite(tmp_path: Path, extension: str) -> None:
    original = make_image(tmp_path, extension)
    path = tmp_path / f"in-place.{extension}"
    shutil.copyfile(original, path)
    write_description(path, path, "First alt text.", "First long description.")
    write_description(path, path, "Second alt text.")
    # The rewrite replaces the alt text and removes the long description it no longer has.
    assert exiftool(path) == {
        "AltTextAccessibility": "Second alt text.",
        "Description": "Second alt text.",
    }
    assert_same_image(original, path)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("extension", FORMATS)
def test_decorative_image_gets_an_empty_alt_text(tmp_path: Path, extension: str) -> None:
    source = make_image(tmp_path, extension)
    described = tmp_path / f"described.{extension}"
    write_description(source, described, "A red car.")
    target = tmp_path / f"decorative.{extension}"
    write_description(described, target, "")
    # Present and empty (decorative), not absent (undescribed); the old description is gone.
    assert exiftool(target) == {"AltTextAccessibility": ""}
    assert_same_image(source, target)


def test_other_formats_are_refused_in_one_sentence(tmp_path: Path) -> None:
    gif = tmp_path / "photo.gif"
    Image.new("P", (8, 8)).save(gif)
    target = tmp_path / "out.gif"
    with pytest.raises(MetadataError) as refusal:
        write_description(gif, target, "A dot.")
    assert str(refusal.value) == (
        "photo.gif: Loupe writes alt text into JPEG, PNG and WebP files only."
    )
    assert not target.exists()
    # The kind comes from the content: a GIF named .jpg is still refused.
    disguised = tmp_path / "disguised.jpg"
    shutil.copyfile(gif, disguised)
    with pytest.raises(MetadataError, match="^disguised.jpg: Loupe writes"):
        write_description(disguised, disguised, "A dot.")
    missing = tmp_path / "missing.png"
    with pytest.raises(MetadataError, match=r"^missing.png: the file could not be read\.$"):
        write_description(missing, target, "A dot.")


def test_damaged_file_is_refused_and_target_kept(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    target = tmp_path / "kept.jpg"
    target.write_bytes(b"what was there")
    with pytest.raises(MetadataError, match=r"^damaged.jpg: .*\.$"):
        write_description(damaged, target, "A dot.")
    assert target.read_bytes() == b"what was there"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.jpg", "kept.jpg"]


def test_threads_write_at_once(tmp_path: Path) -> None:
    sources = [make_image(tmp_path, extension) for extension in FORMATS]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            source = sources[index % len(sources)]
            target = tmp_path / f"thread-{index}{source.suffix}"
            write_description(source, target, f"Alt text {index}.", f"Long {index}.")
        except BaseException as error:  # reported by the assert below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    for index in (0, 4, 11):
        target = next(tmp_path.glob(f"thread-{index}.*"))
        assert exiftool(target)["AltTextAccessibility"] == f"Alt text {index}."
        assert_same_image(sources[index % len(sources)], target)


def test_sidecar(tmp_path: Path) -> None:
    image = make_image(tmp_path, "jpg")
    assert sidecar_path(image) == tmp_path / "photo.jpg.txt"
    assert sidecar_path(Path("a/b.c/photo.final.png")) == Path("a/b.c/photo.final.png.txt")
    # Named after the whole name: photo.png and photo.webp never share one, and an image
    # named photo.txt is never its own.
    assert sidecar_path(Path("photo.png")) != sidecar_path(Path("photo.webp"))
    assert sidecar_path(Path("photo.txt")) == Path("photo.txt.txt")
    assert write_sidecar(image, ALT) == tmp_path / "photo.jpg.txt"
    assert (tmp_path / "photo.jpg.txt").read_text(encoding="utf-8") == ALT
    write_sidecar(image, "")  # decorative: an empty caption
    assert (tmp_path / "photo.jpg.txt").read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg", "photo.jpg.txt"]


@pytest.mark.parametrize("extension", FORMATS)
def test_the_alt_text_written_reads_back(tmp_path: Path, extension: str) -> None:
    source = make_image(tmp_path, extension)
    assert alt_text_in(source) is None  # not described yet
    write_description(source, tmp_path / f"a.{extension}", ALT, LONG)
    assert alt_text_in(tmp_path / f"a.{extension}") == ALT
    write_description(source, tmp_path / f"b.{extension}", "")
    assert alt_text_in(tmp_path / f"b.{extension}") == ""  # decorative
    (tmp_path / "notes.txt").write_text(ALT)
    assert alt_text_in(tmp_path / "notes.txt") is None
    assert alt_text_in(tmp_path / "missing.png") is None


def test_a_failed_replace_leaves_the_target_and_no_temporary_file(tmp_path: Path) -> None:
    folder = tmp_path / "results.csv"
    folder.mkdir()
    with pytest.raises(IsADirectoryError):
        replace_atomically(folder, b"path,level\n")
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]
    assert list(folder.iterdir()) == []


def test_no_torch_or_gradio_imported() -> None:
    code = (
        "import sys, app.tasks.metadata; "
        "print([m for m in ('torch', 'transformers', 'gradio') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
        timeout=60,
    )  # fmt: skip
    assert result.stdout.strip() == "[]"
