"""The files a Batch view run is given (images, and zips of them): checked whole before anything
is written (names, counts, sizes unpacked, the free disk), then placed in the run's images folder;
and the runs' folders that no page holds any longer, removed."""

from __future__ import annotations

import contextlib
import shutil
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from ..config import Limits

MB = 1024 * 1024
MAX_BATCH_FILES = 1000  # files in one run, a zip's included
# Entries a zip's directory may list (folders and hidden files count there, and are left out
# of the run): reading a list of a million takes about a gigabyte.
MAX_LISTED_ENTRIES = 10 * MAX_BATCH_FILES
# File systems take 255 bytes for one name; the rest is room for the `-2` … `-1000` that tells
# apart files sent under the same name.
MAX_NAME_BYTES = 250
# A path inside what was sent, its folders included: far below the 4,096 bytes Linux and macOS
# take for a whole path, the data folder's own included.
MAX_PATH_BYTES = 1024
# Left free on the data folder's disk after unpacking, for conversations, exports and the system.
FREE_DISK_RESERVE_MB = 1024
# A run's folder goes when its page closes; one older than this that no page holds was left by
# a close never heard (a stopped app, a crash). Not sooner: another Loupe on the same data
# folder may hold it.
KEEP_RUN_S = 24 * 3600
# Bit 0 of a zip member's flags: its data is encrypted.
ZIP_ENCRYPTED = 0x1


class BatchProblem(Exception):
    """Why a run cannot start, or a download cannot be made, in one sentence."""


@dataclass(frozen=True)
class Upload:
    """One file of a run: a file sent as it is, or a member of a zip sent."""

    source: Path  # the file sent; for a member, its zip
    name: PurePosixPath  # where it goes, inside the run's images folder
    size: int  # bytes: from the file system, or from the zip's directory for a member
    member: zipfile.ZipInfo | None = None

    def __str__(self) -> str:
        shown = _shortened(str(self.name))
        return shown if self.member is None else f"{shown} in {self.source.name}"


def unpack(uploads: Iterable[Path], into: Path, limits: Limits) -> None:
    """The files sent, zips unpacked with their folders, into the folder `into`; hidden files
    and macOS's resource forks left out, and a second file of one name named `name-2.ext`.
    Refuses in one sentence: what `plan` and `check_free_disk` refuse, before anything is
    written; a member found damaged, or a disk that fails, as it happens (the caller removes
    what was written)."""
    files = plan(uploads, limits)
    check_free_disk(into, sum(file.size for file in files))
    into.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as open_zips:
        zips: dict[Path, zipfile.ZipFile] = {}
        for file in files:
            if file.member is not None and file.source not in zips:
                zips[file.source] = open_zips.enter_context(zipfile.ZipFile(file.source))
            _place(file, into, zips.get(file.source))


def _place(file: Upload, into: Path, bundle: zipfile.ZipFile | None) -> None:
    target = into.joinpath(*file.name.parts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if bundle is None or file.member is None:
            shutil.copyfile(file.source, target)
            return
        # At most the size its zip's directory declares is read: a member holding more fails
        # its checksum.
        with bundle.open(file.member) as source, target.open("xb") as copy:
            shutil.copyfileobj(source, copy)
    except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
        raise BatchProblem(f"{file} could not be unpacked ({exc}).") from None
    except OSError as exc:
        raise BatchProblem(
            f"{file} could not be saved in Loupe's data folder ({exc.strerror or exc})."
        ) from None


def plan(uploads: Iterable[Path], limits: Limits) -> list[Upload]:
    """Every file the uploads hold and its name in the run, read from the files sent and the
    zips' directories only. Refuses in one sentence a zip that cannot be read or is encrypted,
    a name outside its zip, too long, or both a file and a folder, and too many or too large
    files, one by one or in all."""
    files: list[Upload] = []
    for upload in uploads:
        if zipfile.is_zipfile(upload) or upload.suffix.lower() == ".zip":
            files += _members(upload)
        elif not _hidden(PurePosixPath(upload.name)):
            files.append(Upload(upload, PurePosixPath(upload.name), upload.stat().st_size))
    _check_count(len(files))
    for file in files:
        if file.size > limits.max_file_mb * MB:
            raise BatchProblem(f"{file} is over the {limits.max_file_mb} MB limit for one file.")
    total = sum(file.size for file in files)
    if total > limits.max_batch_mb * MB:
        raise BatchProblem(
            f"These files come to {total / MB:,.0f} MB unpacked; the Batch view takes up to "
            f"{limits.max_batch_mb:,} MB at once (launch.py describe takes any amount)."
        )
    return _named(files)


def check_free_disk(folder: Path, needed: int) -> None:
    """Refuses in one sentence `needed` bytes that would leave the disk holding `folder` with
    less than FREE_DISK_RESERVE_MB free."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed + FREE_DISK_RESERVE_MB * MB > free:
        raise BatchProblem(
            f"These files need {needed / MB:,.0f} MB unpacked and the disk of Loupe's data folder "
            f"has {free / MB:,.0f} MB free (it keeps {FREE_DISK_RESERVE_MB:,} MB); free some "
            "space first."
        )


def remove_old_runs(folder: Path, held: Iterable[Path], now: float | None = None) -> None:
    """Removes the run folders in `folder` last changed over KEEP_RUN_S ago, but those `held`."""
    if not folder.is_dir():
        return
    oldest = (time.time() if now is None else now) - KEEP_RUN_S
    kept = set(held)
    for run in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):  # another page's sweep came first
            if run.is_dir() and run not in kept and run.stat().st_mtime < oldest:
                shutil.rmtree(run, ignore_errors=True)


def _listed_entries(archive: Path) -> int | None:
    """How many entries a zip's directory lists, from its end record alone (ZIP64's too), so
    that a zip listing millions is refused before its list is read into memory; None when it
    has no end record (not a zip: ZipFile then says so)."""
    with archive.open("rb") as file:
        end = zipfile._EndRecData(file)  # the stdlib's own reader of that record
    return None if end is None else int(end[zipfile._ECD_ENTRIES_TOTAL])


def _members(archive: Path) -> list[Upload]:
    try:
        listed = _listed_entries(archive)
        if listed is not None and listed > MAX_LISTED_ENTRIES:
            raise BatchProblem(
                f"{archive.name} lists {listed:,} files; the Batch view takes up to "
                f"{MAX_BATCH_FILES:,} at once (launch.py describe takes any number)."
            )
        with zipfile.ZipFile(archive) as bundle:
            infos = [member for member in bundle.infolist() if not member.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise BatchProblem(f"{archive.name} could not be unpacked ({exc}).") from None
    named = [(member, PurePosixPath(member.filename.replace("\\", "/"))) for member in infos]
    for _, name in named:
        if name.is_absolute() or ".." in name.parts or not name.parts:
            raise BatchProblem(f"{archive.name} names a file outside itself: {name}.")
    named = [(member, name) for member, name in named if not _hidden(name)]
    _check_count(len(named))  # before each member is looked at: a zip can list millions
    members = []
    for member, name in named:
        file = Upload(archive, name, member.file_size, member)
        if member.flag_bits & ZIP_ENCRYPTED:
            raise BatchProblem(
                f"{file} is encrypted; unpack it with its password, then add the images."
            )
        if len(str(name).encode()) > MAX_PATH_BYTES or any(
            len(part.encode()) > MAX_NAME_BYTES for part in name.parts
        ):
            raise BatchProblem(
                f"{file} has a name longer than files can have on disk; shorten it first."
            )
        members.append(file)
    return members


def _check_count(files: int) -> None:
    if files > MAX_BATCH_FILES:
        raise BatchProblem(
            f"That is {files} files; the Batch view takes up to {MAX_BATCH_FILES} at once "
            "(launch.py describe takes any number)."
        )


def _named(files: list[Upload]) -> list[Upload]:
    """The files with the names they get in the run's folder: a second file of one name gets
    `name-2.ext`; a name that is a file and a folder at once is refused. Names are compared
    without case, as macOS's and Windows's disks compare them."""
    taken: set[str] = set()  # files' names
    folders: set[str] = set()
    named = []
    for file in files:
        for clash in (file.name, *file.name.parents):
            if str(clash).casefold() in (folders if clash == file.name else taken):
                raise BatchProblem(
                    f"“{_shortened(str(clash))}” is both a file and a folder in what was sent; "
                    "rename one of them first."
                )
        name, number = file.name, 1
        while str(name).casefold() in taken or str(name).casefold() in folders:
            number += 1
            name = file.name.with_name(f"{file.name.stem}-{number}{file.name.suffix}")
        taken.add(str(name).casefold())
        folders.update(str(up).casefold() for up in name.parents)
        named.append(replace(file, name=name))
    return named


def _hidden(name: PurePosixPath) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.parts)


def _shortened(name: str, most: int = 60) -> str:
    return name if len(name) <= most else f"{name[: most - 1]}…"
