"""Alt text written into image files: IPTC's accessibility fields in XMP, and a .txt sidecar.

Only the metadata changes: the image data is copied byte for byte, and the EXIF, IPTC, ICC
profile and other XMP already in the file are kept. The kind of file is decided by its content,
never by its name. Every refusal is a MetadataError with one sentence.
"""

from __future__ import annotations

import threading
import uuid
import zlib
from pathlib import Path

import pyexiv2

from .atomic_file import replace_atomically

# Exiv2's built-in Iptc4xmpCore schema (prefix "iptc") already knows both accessibility
# properties, so no namespace needs registering: they read back as XMP-iptcCore in ExifTool.
ALT_TEXT_KEY = "Xmp.iptc.AltTextAccessibility"
EXTENDED_KEY = "Xmp.iptc.ExtDescrAccessibility"
DESCRIPTION_KEY = "Xmp.dc.description"
DEFAULT_LANGUAGE = 'lang="x-default"'

# pyexiv2 wraps one C++ library whose thread safety is not documented: one call at a time.
_LOCK = threading.Lock()


class MetadataError(Exception):
    """A file whose alt text could not be written; str() is one sentence for the person."""


def _kind(data: bytes) -> str | None:
    """The format by its signature: "JPEG", "PNG", "WebP", or None for any other."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def write_description(
    source: Path, target: Path, alt_text: str, long_description: str = ""
) -> None:
    """Copy `source` to `target` (or rewrite it in place when they are the same path) with the
    alt text in its metadata.

    Fields written, in XMP, each a lang-alt with one x-default item:
    - Iptc4xmpCore:AltTextAccessibility = alt_text. An empty alt text marks the image as
      decorative (as alt="" does in HTML), and is written as an empty item, not left out, so
      that a reader can tell "decorative" from "not described yet".
    - Iptc4xmpCore:ExtDescrAccessibility = long_description; removed when there is none, so
      that a rewrite never leaves a stale one behind.
    - dc:description = alt_text, not the long description: readers without the IPTC fields fall
      back to Description as the alt text (Mastodon, WordPress), so it must be alt-sized. It is
      removed for a decorative image, so that such a reader does not announce old text.

    The target is written atomically: a temporary file in its folder, then os.replace, so a
    reader never sees half a file and a failure leaves the target as it was.
    """
    source, target = Path(source), Path(target)
    try:
        data = source.read_bytes()
    except OSError as error:
        raise MetadataError(f"{source.name}: the file could not be read.") from error
    kind = _kind(data)
    if kind is None:
        raise MetadataError(
            f"{source.name}: Loupe writes alt text into JPEG, PNG and WebP files only."
        )
    decorative = alt_text == ""
    # Exiv2 drops an empty lang-alt item when it writes, so a decorative image gets a unique
    # placeholder that is then blanked in the written bytes.
    placeholder = f"loupe-decorative-{uuid.uuid4().hex}" if decorative else ""
    changes: dict[str, object] = {
        ALT_TEXT_KEY: {DEFAULT_LANGUAGE: placeholder or alt_text},
        EXTENDED_KEY: {DEFAULT_LANGUAGE: long_description} if long_description else None,
        DESCRIPTION_KEY: None if decorative else {DEFAULT_LANGUAGE: alt_text},
    }
    try:
        with _LOCK:
            image = pyexiv2.ImageData(data)
            try:
                image.modify_xmp(changes)
                written = image.get_bytes()
            finally:
                image.close()
    except (RuntimeError, ValueError) as error:
        raise MetadataError(
            f"{source.name}: the file is damaged or its metadata could not be written."
        ) from error
    if decorative:
        written = _blank(written, placeholder, kind, source.name)
    replace_atomically(target, written, mode_from=source)


def alt_text_in(path: Path) -> str | None:
    """The alt text written in an image file's metadata, or None when it has none (or is not
    a JPEG, PNG or WebP file that can be read)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if _kind(data) is None:
        return None
    try:
        with _LOCK:
            image = pyexiv2.ImageData(data)
            try:
                field = image.read_xmp().get(ALT_TEXT_KEY)
            finally:
                image.close()
    except (RuntimeError, ValueError):
        return None
    return field.get(DEFAULT_LANGUAGE) if isinstance(field, dict) else None


def _blank(data: bytes, placeholder: str, kind: str, name: str) -> bytes:
    """Empty the lang-alt item that holds `placeholder`, keeping every length: the placeholder
    moves out of the item as XML whitespace, which RDF ignores, so JPEG segment and WebP chunk
    sizes stay right; a PNG chunk also gets its CRC recomputed."""
    token = placeholder.encode("ascii")
    old = b">" + token + b"</rdf:li>"
    new = b"></rdf:li>" + b" " * len(token)
    at = data.find(old)
    if at < 0 or data.find(old, at + 1) >= 0:
        raise MetadataError(f"{name}: the alt text could not be marked as decorative.")
    data = data[:at] + new + data[at + len(old) :]
    if kind == "PNG":
        data = _fix_png_crc(data, at)
    return data


def _fix_png_crc(data: bytes, offset: int) -> bytes:
    """Recompute the CRC of the PNG chunk that holds byte `offset`."""
    position = 8
    while position + 12 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        end = position + 8 + length
        if position + 8 <= offset < end:
            crc = zlib.crc32(data[position + 4 : end]).to_bytes(4, "big")
            return data[:end] + crc + data[end + 4 :]
        position = end + 4
    raise MetadataError("The PNG file's metadata could not be found after writing.")


def sidecar_path(image: Path) -> Path:
    """The caption file beside an image, named as XMP sidecars are, after the whole file name
    (photo.jpg -> photo.jpg.txt): two images never share one, and no image is its own."""
    image = Path(image)
    return image.with_name(f"{image.name}.txt")


def write_sidecar(image: Path, text: str) -> Path:
    """Write `text` (UTF-8, exactly as given) to the image's sidecar, atomically, and return
    the sidecar's path. An empty text, a decorative image, gives an empty file."""
    path = sidecar_path(image)
    replace_atomically(path, text.encode("utf-8"))
    return path
