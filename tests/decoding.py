"""Files decoded as a message's are: each file's kind told by its content, decoded, then laid out
as the model takes them (a PDF's pages and a video's frames as images, a soundtrack as audio)."""

from __future__ import annotations

from PIL import Image

from app.config import Limits
from app.intake.files import file_kind, load_file
from app.intake.message import with_pages
from model import AudioClip


def load_attachments(paths: list[str], limits: Limits) -> tuple[list[Image.Image], list[AudioClip]]:
    """The images (a video's frames among them) and audio the model gets from `paths`;
    MediaError names a file that cannot be used."""
    files = [(path, load_file(path, file_kind(path, limits), limits)) for path in paths]
    _, images, audio, videos = with_pages("", files, described=False, limits=limits)
    return images + [frame for video in videos for frame in video.frames], audio
