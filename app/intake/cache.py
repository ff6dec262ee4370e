"""A small cache of what was decoded from files (a video's frames, a PDF's pages), so that the
turns after the one that sent a file do not decode it again. An entry is found by the file's
path, size and modification time, and what it was decoded with; the least recently used goes
first, as soon as the cache holds more than its count of entries or its bytes of pictures and
sound (a decoded file larger than that is not kept at all)."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from PIL import Image

T = TypeVar("T")

# Each cache's ceiling: ten rendered PDF pages take 77 MB, two videos' 32 frames 130 MB.
MAX_CACHED_MB = 256


class DecodedFiles(Generic[T]):
    """At most `size` decoded files, together at most `max_mb` megabytes (see decoded_bytes)."""

    def __init__(self, size: int, max_mb: int = MAX_CACHED_MB):
        self.size, self.max_bytes = size, max_mb * 1024 * 1024
        self._entries: OrderedDict[tuple, tuple[T, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        """What the kept entries take, by decoded_bytes."""
        return self._bytes

    def get(self, path: Path, how: Hashable, decode: Callable[[], T]) -> T:
        """What `decode` makes of `path` (OSError when it cannot be read), from the cache when
        the same file was decoded the same way."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, how)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        decoded = decode()
        weight = decoded_bytes(decoded)
        if weight > self.max_bytes:
            return decoded
        with self._lock:
            if key not in self._entries:  # another thread may have decoded it meanwhile
                self._entries[key] = (decoded, weight)
                self._bytes += weight
            while len(self._entries) > self.size or self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
        return decoded


def decoded_bytes(value: Any) -> int:
    """About the memory a decoded file holds: its images' pixels, its arrays and bytes, found
    through tuples, lists and dataclasses (what the decoders return); other values count 0."""
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands())
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, tuple | list):
        return sum(decoded_bytes(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(decoded_bytes(getattr(value, field.name)) for field in dataclasses.fields(value))
    return 0
