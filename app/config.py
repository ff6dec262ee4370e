"""Typed configuration, built once in launch.py and passed down."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from model import ModelConfig, RemoteEngineConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_ASR_MODEL = "tiny.en"


@dataclass(frozen=True)
class AsrConfig:
    """Speech recognition: a faster-whisper size name or a local CTranslate2 folder."""

    model: str = DEFAULT_ASR_MODEL


@dataclass(frozen=True)
class Limits:
    """How much one person can ask of the app at once; every limit on input lives here."""

    queue_size: int = 8
    max_files_per_message: int = 8
    # Five minutes of 48 kHz stereo WAV (about 55 MB) fits; so does a 25-megapixel PNG.
    max_file_mb: int = 100
    # What one Batch view run may unpack in all: a thousand web images of 2 MB. A zip is
    # checked from its directory before anything is written, so a few MB of zeros cannot fill
    # the disk; larger sets go through `launch.py describe`, which reads them where they are.
    max_batch_mb: int = 2048
    # Refused from the header, before decoding: a small file can declare billions of pixels.
    max_image_mp: float = 25.0
    # Recordings are split at pauses into the model's 30 s clips; five minutes is ten or more
    # clips (about 7,500 tokens), a long voice note but far from filling the context window.
    max_audio_s: float = 300.0
    # About 25,000 tokens: a fraction of the context window, leaving room for the rest of the
    # conversation and the answer, and a prompt a CPU still reads in minutes, not hours.
    max_message_chars: int = 100_000
    # Each page is an image of up to 1,120 tokens: ten pages are about 11,000 tokens, a report's
    # worth that leaves room for the conversation; a person names pages to read others.
    max_pdf_pages: int = 10
    # A text file (notes, code, CSV, JSON, a log) goes to the model whole, as text: its
    # characters count against max_request_chars below, which a larger file could not fit.
    max_text_kb: int = 20
    # A video is at most 32 frames (about 2,100 tokens at 70 per frame) and its soundtrack 25
    # tokens a second: two minutes is about 5,100 tokens, and its sound four 30 s clips.
    max_video_s: float = 120.0
    # What one request sends the model in all (app/intake/totals.py): every message of a /v1
    # request, or the turns of a conversation the page sends (its oldest turns are left out
    # beyond these). Sized so that the worst request they allow adds about 3.3 GB to the app
    # and its worker together on a CPU (README "Safe by default"; bench's request memory
    # stage measures it); on a CPU the prompt's attention takes memory growing with the square
    # of its tokens, so text and sound are held to what one long message or recording needs.
    max_request_messages: int = 500
    # About 5,000 tokens of prose (11,000 for the demo model's small vocabulary).
    max_request_chars: int = 20_000
    # Images, PDF pages read and video frames: a video's 32 frames and 16 images or pages.
    max_request_images: int = 48
    # Images at their own size, pages and frames as rendered: four 25-megapixel photos.
    max_request_mp: float = 100.0
    # One recording and one video of the longest length: 7,500 and 5,100 tokens.
    max_request_audio_s: float = 300.0
    max_request_video_s: float = 120.0


@dataclass(frozen=True)
class AppConfig:
    """Everything launch.py decided; environment variables LOUPE_* give the defaults."""

    model: ModelConfig = field(default_factory=ModelConfig)
    # A model server to use instead of the in-process model (launch.py --engine-url).
    remote: RemoteEngineConfig | None = None
    # The Bearer key Loupe's own /v1 requires ("" for none); never shown.
    api_key: str = field(default="", repr=False)
    asr: AsrConfig = field(default_factory=AsrConfig)
    limits: Limits = field(default_factory=Limits)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    desktop: bool = False
    share: bool = False
    # The page's logins, (user name, password) each (--auth, --auth-file); none: no login.
    auth: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    data_dir: Path = field(default_factory=lambda: default_data_dir())
    # Host names the page may be reached by besides the bound host and localhost (see server.py).
    allowed_hosts: tuple[str, ...] = ()
    # Web apps (origins such as https://app.example.com) whose pages may call /v1.
    allowed_origins: tuple[str, ...] = ()


def default_data_dir() -> Path:
    """Where conversations and their files are kept: LOUPE_DATA_DIR, else ~/.loupe."""
    return Path(os.environ.get("LOUPE_DATA_DIR") or Path.home() / ".loupe")


def env_default(name: str, fallback: str) -> str:
    """A flag's default from the LOUPE_<NAME> environment variable."""
    return os.environ.get(f"LOUPE_{name.upper()}", fallback)
