"""Image detail "Auto": the image token budget for a request, from its task and its images.

Gemma 4 reads each image as a grid of 48 x 48-pixel patches, one soft token each, at most a
budget of 70, 140, 280, 560 or 1120 of them: the processor resizes the image, keeping its aspect
ratio, to about `budget` x 48 x 48 pixels (up or down). At the model's default of 280 a
1920 x 1080 screenshot shrinks to 1056 x 576, and its 13-pixel text to 7 pixels: misread.

Auto chooses, for each image:

- **Photos and pictures: 280.** An image is taken as text when complete lines of small text
  (a run of ink rows with clear background above and below, inside a 48 x 64 tile, made of
  sharp strokes on a flat background) fill at least 1% of its tiles and at least 6 of them.
- **Screenshots, documents, charts and other images of text: 560 or 1120**, the smaller of the
  two at which the image's typical text line, resized as the processor will, is still at least
  MIN_LINE_PX (10) pixels from its tallest letter to its lowest: the ink of one line of a
  13-pixel font, the smallest common screen text, as it stands at 100% zoom. 1120 when neither
  reaches it. So a 1280 x 800 screenshot of 13-pixel text (lines of 10 to 12 pixels) gets 560,
  which draws it at 1.08x; a 1920 x 1080 one of the same text gets 1120 (0.76x at 560).

A request's images are all encoded at one budget (the processor takes one per call, and
vLLM's `mm_processor_kwargs` one per request), so Auto gives the request the largest budget any
of its images needs: earlier turns' images are encoded again with each reply, and a screenshot
asked about three turns ago still needs its text readable. A task's preferred budget (Read all
text and Diagram ask for 1120) replaces what the images ask for; a budget the person set
replaces Auto altogether and is never changed.

Within the context window: when the prompt would not fit at Auto's budget, Auto steps down
(1120, 560, 280) while the whole conversation does not fit, and below 280 only while the newest
message alone does not (at 280 and below, the oldest turns are left out instead, as without
Auto). Prompts are counted from the images' sizes (exactly, as the processor counts them), audio
length and text (one token per 3 bytes, more than Gemma's tokenizer uses for English), so this
needs no processor and runs before either engine gets the request.

The numbers were measured on 19 real images (the app's example screenshot and photo, seven
photos shipped with gradio and matplotlib, ten screenshots, charts and diagrams from
documentation), 57 Chromium screenshots of prose, code and tables in 9 to 48 pixel fonts at
1280 x 800, 1920 x 1080 and 2x, and a made-up phone photo of a printed page: the photos showed
at most 1 tile of text lines, the images of text at least 6 (a 3023 x 1341 screenshot of large
text) and mostly over 30; the lines' heights came out at about 0.75 of the font size.

Pure PIL and numpy, no model: about 9 ms for a 1024 x 640 image and 28 ms for 1920 x 1080 on
one core of the development CPU; larger images are sampled to MAX_TILES tiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from .messages import (
    AUTO_IMAGE_TOKENS,
    DEFAULT_IMAGE_TOKENS,
    IMAGE_TOKEN_BUDGETS,
    ChatRequest,
    GenerationOptions,
    Message,
    turn_starts,
)

TEXT_BUDGETS = (560, 1120)  # what an image of text gets, the smaller first
PHOTO_BUDGET = DEFAULT_IMAGE_TOKENS
MIN_LINE_PX = 10.0  # a text line's ink height once resized: a 13 px font's, at 100% zoom
PATCH_PX = 48  # one soft token: 16 px patches merged 3 x 3
# The most pixels the model reads of one image: the largest budget's patches (about 2.58 MP).
MAX_IMAGE_PIXELS = max(IMAGE_TOKEN_BUDGETS) * PATCH_PX * PATCH_PX
TILE_H_PX, TILE_W_PX = 48, 64  # tall enough to hold a whole line of up to a ~36 px font
MAX_TILES = 1024  # larger images are analysed on a regular grid of this many tiles
BACKGROUND_TOLERANCE = 12  # grey levels from a tile's median still counted as its background
INK_CONTRAST = 64  # grey levels from the background that count as ink
MIN_BACKGROUND_SHARE = 0.5  # text sits on a flat background...
INK_SHARE = (0.02, 0.5)  # ...and covers a little of it
MIN_STROKES_PER_ROW = 1.0  # background-to-ink edges per inked row: letters, not one boundary
MAX_BLUR_PER_EDGE = 2.0  # in-between pixels per ink edge: text is sharp, photos are soft
RULE_SHARE = 0.9  # a row or column inked this much across a tile is a rule or border, not text
MIN_LINE_RUN_PX = 5
MIN_TEXT_SHARE = 0.01  # of the tiles
MIN_TEXT_TILES = 6
TEXT_BYTES_PER_TOKEN = 3
TURN_TOKENS = 6  # <|turn>role\n ... <turn|>\n
PROMPT_TOKENS = 8  # <bos> and the model turn's opening, with its empty thought channel
MEDIA_MARKER_TOKENS = 2  # <|image> ... <image|>, <|audio> ... <audio|>
AUDIO_TOKENS_PER_S = 25  # 40 ms each
MAX_AUDIO_CLIP_S = 30.0


@dataclass(frozen=True)
class TextLines:
    """What an image holds in lines of text: the share of its tiles holding a complete line,
    how many, and the typical line's ink height in the image's own pixels (0 with none)."""

    share: float
    tiles: int
    line_px: float

    @property
    def is_text(self) -> bool:
        return self.share >= MIN_TEXT_SHARE and self.tiles >= MIN_TEXT_TILES


@dataclass(frozen=True)
class ImageDetail:
    """The image budget a reply's prompt was built with, and how it came to be.

    `auto`: chosen by Auto (else a person's or a client's setting); `reason`: why, in a few
    words, for the page ("small text, lines about 8 px high").
    """

    tokens: int
    auto: bool
    reason: str = ""

    @property
    def label(self) -> str:
        return f"{self.tokens} (Auto)" if self.auto else f"{self.tokens} (set)"


def resized(width: int, height: int, budget: int) -> tuple[int, int]:
    """The size the Gemma 4 processor resizes an image to at `budget`: about budget x 48 x 48
    pixels in its aspect ratio, each side a multiple of 48 (transformers'
    get_aspect_ratio_preserving_size)."""
    factor = math.sqrt(budget * PATCH_PX * PATCH_PX / (width * height))
    new_width = math.floor(width * factor / PATCH_PX) * PATCH_PX
    new_height = math.floor(height * factor / PATCH_PX) * PATCH_PX
    longest = budget * PATCH_PX
    if new_height == 0:
        new_height, new_width = PATCH_PX, min(width // height * PATCH_PX, longest)
    elif new_width == 0:
        new_width, new_height = PATCH_PX, min(height // width * PATCH_PX, longest)
    return new_width, new_height


def soft_tokens(width: int, height: int, budget: int) -> int:
    """The image's soft tokens at `budget`, as the processor counts them."""
    new_width, new_height = resized(width, height, budget)
    return (new_width // PATCH_PX) * (new_height // PATCH_PX)


def text_lines(image: Image.Image) -> TextLines:
    """Find complete lines of text in 48 x 64 tiles of the image (see the module's docstring)."""
    gray = _gray(image)
    rows, columns = gray.shape[0] // TILE_H_PX, gray.shape[1] // TILE_W_PX
    if rows * columns == 0:
        return TextLines(0.0, 0, 0.0)
    step = math.ceil(math.sqrt(rows * columns / MAX_TILES))  # sample a big image's tiles
    tiles = (
        gray[: rows * TILE_H_PX, : columns * TILE_W_PX]
        .reshape(rows, TILE_H_PX, columns, TILE_W_PX)[::step, :, ::step, :]
        .transpose(0, 2, 1, 3)
        .reshape(-1, TILE_H_PX, TILE_W_PX)
    )  # (tiles, 48, 64) uint8
    count = len(tiles)
    deviation = np.abs(tiles.astype(np.int16) - _medians(tiles)[:, None, None])
    background = deviation <= BACKGROUND_TOLERANCE
    ink = deviation >= INK_CONTRAST
    # Rules and borders (table lines, underlines, window edges) are not letters.
    ink &= ~(ink.mean(axis=2, keepdims=True) >= RULE_SHARE)
    ink &= ~(ink.mean(axis=1, keepdims=True) >= RULE_SHARE)
    inked_rows = ink.any(axis=2)  # (tiles, 48)
    rows_with_ink = np.maximum(inked_rows.sum(axis=1), 1)
    edges = (ink[:, :, 1:] != ink[:, :, :-1]).sum(axis=(1, 2))
    blur = (~background & ~ink).sum(axis=(1, 2)) / np.maximum(edges, 1)
    candidates = (
        (background.mean(axis=(1, 2)) >= MIN_BACKGROUND_SHARE)
        & (ink.mean(axis=(1, 2)) >= INK_SHARE[0])
        & (ink.mean(axis=(1, 2)) <= INK_SHARE[1])
        & (_strokes(ink, background) / rows_with_ink >= MIN_STROKES_PER_ROW)
        & (blur <= MAX_BLUR_PER_EDGE)
    )
    lines = _line_heights(inked_rows)
    found = lines[candidates & (lines > 0)]
    line_px = float(np.median(found)) if len(found) else 0.0
    return TextLines(len(found) / count, len(found), line_px)


def image_need(image: Image.Image) -> tuple[int, str]:
    """The budget one image needs, and why in a few words."""
    lines = text_lines(image)
    if not lines.is_text:
        return PHOTO_BUDGET, "a photo or picture, no small text"
    for budget in TEXT_BUDGETS:
        _, height = resized(image.width, image.height, budget)
        if lines.line_px * height / image.height >= MIN_LINE_PX:
            break
    size = f"lines about {lines.line_px:.0f} px high"
    if budget == TEXT_BUDGETS[-1]:
        return budget, f"small text, {size}"
    return budget, f"text, {size}"


def image_tokens_for(images: Sequence[Image.Image], preferred: int = 0) -> int:
    """Auto's budget for a request with these images, before the context window is counted."""
    return _wanted(images, preferred)[0]


def estimate_tokens(messages: Sequence[Message], budget: int) -> int:
    """About how many tokens the prompt takes with images at `budget`: images and audio as the
    processor counts them, text generously."""
    tokens = PROMPT_TOKENS
    for message in messages:
        tokens += TURN_TOKENS + math.ceil(len(message.text.encode()) / TEXT_BYTES_PER_TOKEN)
        tokens += sum(
            soft_tokens(image.width, image.height, budget) + MEDIA_MARKER_TOKENS
            for image in message.images
        )
        tokens += sum(
            math.ceil(min(clip.duration_s, MAX_AUDIO_CLIP_S) * AUDIO_TOKENS_PER_S)
            + MEDIA_MARKER_TOKENS
            for clip in message.audio
        )
    return tokens


def resolve(
    request: ChatRequest, context_tokens: int = 0
) -> tuple[ChatRequest, ImageDetail | None]:
    """The request with a concrete image budget, and the detail to show with its reply (None
    when it has no images).

    A budget set in the options stays as it is. Auto's choice steps down to fit
    `context_tokens` (prompt and reply together; 0 when the window is not known).
    """
    options = request.options
    images = [image for message in request.messages for image in message.images]
    if options.image_tokens != AUTO_IMAGE_TOKENS:
        return request, ImageDetail(options.image_tokens, auto=False) if images else None
    if not images:  # nothing to encode; the number still goes to servers, so a valid one
        return _with_budget(request, DEFAULT_IMAGE_TOKENS), None
    wanted, reason = _wanted(images, options.preferred_image_tokens)
    chosen = wanted
    if context_tokens:
        chosen = _step_down(request.messages, options, wanted, context_tokens)
        if chosen != wanted:
            reason = f"{reason}; {wanted} would not fit the context window"
    return _with_budget(request, chosen), ImageDetail(chosen, auto=True, reason=reason)


def next_lower(budget: int) -> int:
    """The budget below `budget` (the lowest stays)."""
    return max([b for b in IMAGE_TOKEN_BUDGETS if b < budget], default=IMAGE_TOKEN_BUDGETS[0])


# -- helpers -------------------------------------------------------------------------------------


def _wanted(images: Sequence[Image.Image], preferred: int) -> tuple[int, str]:
    if preferred:
        return preferred, "the task asks for it"
    if not images:
        return DEFAULT_IMAGE_TOKENS, "no images"
    needs = [image_need(image) for image in images]
    return max(needs, key=lambda need: need[0])


def _step_down(
    messages: tuple[Message, ...], options: GenerationOptions, wanted: int, context_tokens: int
) -> int:
    """The largest budget up to `wanted` at which the conversation fits whole; at or below 280
    (or `wanted`, if less) it is enough that the newest turn fits: older turns may go."""
    room = context_tokens - max(1, min(options.max_new_tokens, context_tokens // 4))
    kept_head = 1 if messages and messages[0].role == "system" else 0
    starts = turn_starts(messages)
    newest = messages[:kept_head] + messages[starts[-1] :] if starts else messages
    floor = min(wanted, DEFAULT_IMAGE_TOKENS)
    for budget in sorted((b for b in IMAGE_TOKEN_BUDGETS if b <= wanted), reverse=True):
        if estimate_tokens(messages, budget) <= room:
            return budget
        if budget <= floor and estimate_tokens(newest, budget) <= room:
            return budget
    return IMAGE_TOKEN_BUDGETS[0]


def _with_budget(request: ChatRequest, budget: int) -> ChatRequest:
    return replace(request, options=replace(request.options, image_tokens=budget))


def _gray(image: Image.Image) -> np.ndarray:
    """8-bit grey levels, shape (height, width); transparency over white, as a page shows it."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        backdrop = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(backdrop, image)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def _medians(tiles: np.ndarray) -> np.ndarray:
    """Each tile's median grey level, from a histogram per tile (no sorting) of every other
    pixel both ways: a background's value either way. Shape (tiles,)."""
    tiles = tiles[:, ::2, ::2]
    count, pixels = len(tiles), tiles[0].size
    offsets = (np.arange(count, dtype=np.int64) * 256)[:, None]
    histogram = np.bincount(
        (tiles.reshape(count, -1) + offsets).ravel(), minlength=count * 256
    ).reshape(count, 256)
    return np.argmax(histogram.cumsum(axis=1) >= (pixels + 1) // 2, axis=1).astype(np.int16)


def _strokes(ink: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Background-to-ink edges along each tile's rows: where ink starts with background at most
    two in-between (anti-aliased) pixels before it. A letter's stroke counts once; a soft edge
    between two areas, whose in-between pixels run wider, not at all. Shape (tiles,)."""
    starts = ink[:, :, 3:] & ~ink[:, :, 2:-1]
    near = background[:, :, 2:-1] | background[:, :, 1:-2] | background[:, :, :-3]
    return (starts & near).sum(axis=(1, 2))


def _line_heights(inked_rows: np.ndarray) -> np.ndarray:
    """The tallest complete line in each tile: a run of inked rows with an empty row above and
    below (so not cut by the tile's edge), at least MIN_LINE_RUN_PX; 0 where none. Shape
    (tiles,)."""
    count, height = inked_rows.shape
    padded = np.zeros((count, height + 2), dtype=np.int8)
    padded[:, 1:-1] = inked_rows
    change = np.diff(padded, axis=1)
    tile, start = np.nonzero(change == 1)  # runs in order, each start paired with its end
    _, end = np.nonzero(change == -1)
    complete = (start > 0) & (end < height) & (end - start >= MIN_LINE_RUN_PX)
    tallest = np.zeros(count, dtype=np.int64)
    np.maximum.at(tallest, tile[complete], (end - start)[complete])
    return tallest
