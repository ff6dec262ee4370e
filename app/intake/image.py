"""Images: decoded upright, in RGB, scaled down as they are decoded to what Gemma 4 can use."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from model import MAX_IMAGE_PIXELS

from ..config import Limits
from .cache import DecodedFiles
from .probe import MediaError, check_size, plain_number, unreadable

# The image formats PIL may parse; others (PSD, ICNS, EPS via Ghostscript, ...) are refused so
# that only well-trodden decoders ever see an upload. (JPEG includes cameras' MPO files.)
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
# 16-bit greyscale modes: PIL's convert("RGB") would clip them to white, so they are scaled.
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
# Gemma 4 reads an image as 48x48-pixel patches, one soft token each, at most 1120 of them: its
# processor resizes every image to about 2.58 megapixels or less (1350x1910 for an A4 page,
# 1967x1311 for a 3:2 photo). Images are scaled down to that as they are decoded, so that no
# larger copy lives on (a 25-megapixel PNG takes 100 MB decoded; this, 7.7 MB): MAX_IMAGE_PIXELS.
# Image.resize first shrinks by whole factors (box averaging) down to this many times the size
# it aims for, then resamples (bicubic): as Image.thumbnail does, 2-3 times faster than Lanczos
# on a 25-megapixel photo; the processor resamples the image again anyway.
REDUCING_GAP = 2.0
# Modes Image.resize takes by nearest neighbour only; they are converted first.
NEAREST_ONLY_MODES = {"1": "L", "P": "RGBA", "PA": "RGBA"}
# Decoded images of the last few files: every turn of a conversation shows the model its
# earlier images again (eight photos at 2.58 megapixels take 62 MB).
CACHED_IMAGES = 16

# PIL warns from 89 megapixels; Loupe's own limit (max_image_mp) refuses such images in a
# sentence, so the warning would only repeat it in the console.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_decoded: DecodedFiles[Image.Image] = DecodedFiles(CACHED_IMAGES)


def decoded_image(path: str | Path, limits: Limits) -> Image.Image:
    """`load_image`'s image of the file, from the cache when the same file was decoded under the
    same limits. The image is shared: scale or crop a copy, never the image itself."""
    path = Path(path)
    try:
        return _decoded.get(path, limits, lambda: load_image(path, limits))
    except OSError as exc:  # a kept file gone since
        raise MediaError(unreadable(path.name, exc)) from exc


def load_image(
    path: str | Path, limits: Limits, max_pixels: int | None = MAX_IMAGE_PIXELS
) -> Image.Image:
    """An upright RGB image: the first frame of an animation, transparency composited onto
    white, 16-bit greyscale scaled to 8 bits; scaled down (in its aspect ratio) to at most
    `max_pixels` as it is decoded, None keeping every pixel (to crop a region at full detail)."""
    path = Path(path)
    check_size(path, limits)
    with open_image(path, limits) as opened:
        try:
            if max_pixels:  # a JPEG is decoded at 1/2, 1/4 or 1/8 of its size when that is enough
                opened.draft(opened.mode, fitting(opened.size, max_pixels))
            opened.load()  # decode fully now, so a truncated file fails here
            # Turned before scaling (a scaled copy has lost a TIFF's tags), in place (no copy).
            ImageOps.exif_transpose(opened, in_place=True)
            return _rgb(_shrunk(opened, max_pixels))
        except Exception as exc:  # PIL's decoders raise many types for damaged files
            if "truncated" in str(exc) or isinstance(exc, EOFError):
                problem = "is cut short: the image file is incomplete"
            else:
                problem = "is not an image Loupe can read"
            raise MediaError(f"{path.name} {problem}.") from exc


def open_image(path: Path, limits: Limits) -> Image.Image:
    """The image with only its header read; refuses it by pixel count before any decoding."""
    try:
        opened = Image.open(path, formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:  # PIL's own ceiling, far above ours
        # PIL gives the size only in its message: "Image size (400000000 pixels) exceeds ..."
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(declared[1]) if declared else None
        raise MediaError(_too_many_pixels(path.name, pixels, limits)) from exc
    except Exception as exc:  # UnidentifiedImageError, or a plugin's own error type
        raise MediaError(f"{path.name} is not an image Loupe can read.") from exc
    width, height = opened.size
    if width * height > limits.max_image_mp * 1_000_000:
        opened.close()
        raise MediaError(_too_many_pixels(path.name, width * height, limits))
    if width < 1 or height < 1:
        opened.close()
        raise MediaError(f"{path.name} is not an image Loupe can read.")
    return opened


def fitting(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """`size` (width, height) scaled down in its aspect ratio to at most `max_pixels`; as it is
    when it already fits."""
    width, height = size
    if width * height <= max_pixels:
        return width, height
    factor = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * factor)), max(1, math.floor(height * factor))


def _shrunk(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """`image` scaled down to at most `max_pixels` (None: as it is)."""
    size = fitting(image.size, max_pixels) if max_pixels else image.size
    if size == image.size:
        return image
    if image.mode in NEAREST_ONLY_MODES:
        image = image.convert(NEAREST_ONLY_MODES[image.mode])
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=REDUCING_GAP)


def _too_many_pixels(name: str, pixels: int | None, limits: Limits) -> str:
    size = "more pixels than PIL reads"
    if pixels:
        size = f"{plain_number(pixels / 1_000_000)} megapixels"
    limit = plain_number(limits.max_image_mp)
    return f"{name} has {size}; Loupe takes images up to {limit} megapixels."


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode in SIXTEEN_BIT_MODES:
        scaled = np.asarray(image, dtype=np.float32) / 257.0  # 0..65535 -> 0..255
        image = Image.fromarray(scaled.round().clip(0, 255).astype(np.uint8), "L")
    elif image.mode in ("I", "F"):
        image = Image.fromarray(_to_8_bits(np.asarray(image, dtype=np.float64)), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_8_bits(values: np.ndarray) -> np.ndarray:
    """32-bit integer or float pixels as 8 bits, by the range they use: 0..1, 0..255, 0..65535,
    or else their own minimum to maximum."""
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if low >= 0 and high <= 1.0:
        values = values * 255
    elif low >= 0 and high > 255 and high <= 65535:
        values = values / 257
    elif low < 0 or high > 65535:
        values = (values - low) * (255 / (high - low or 1))
    return values.round().clip(0, 255).astype(np.uint8)


