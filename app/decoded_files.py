"""A small cache of what was decoded from files (a video's frames, a PDF's pages), so that the
turns after the one that sent a file do not decode it again. An entry is found by the file's
path, size and modification time, and what it was decoded with; the least recently used goes
first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class DecodedFiles(Generic[T]):
    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[tuple, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, how: Hashable, decode: Callable[[], T]) -> T:
        """What `decode` makes of `path` (OSError when it cannot be read), from the cache when
        the same file was decoded the same way."""
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, how)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        decoded = decode()
        with self._lock:
            self._entries[key] = decoded
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return decoded
