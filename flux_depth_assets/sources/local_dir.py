"""`local_dir` sources: files under a folder, matched by glob.

Only regular files inside the folder are read. A name that matches the include patterns but is
something else (a symlink leaving the folder, a FIFO, socket or device, a folder) is listed as an
object whose read fails with the reason, so the scan records a rejected row instead of dropping it
silently; such entries are never opened (a FIFO would block the read forever). The pipeline's
own storage is never read: a source inside it is refused, and a source holding it skips that
sub-folder (one rejected row says so). System folders (`/`, `/etc`, the home folder...) are
refused (see `sources.roots`).
"""

from __future__ import annotations

import os
import stat
from functools import partial
from pathlib import Path

from flux_depth_assets.config.models import LocalDirSource
from flux_depth_assets.sources.base import RefusedEntry, SourceError, SourceObject, matches, refused
from flux_depth_assets.sources.roots import (
    STORAGE_ROOT_REASON,
    inside,
    storage_folders,
    system_root_reason,
)

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _read(path: str) -> bytes:
    """The bytes of a regular file; anything else is refused without blocking on it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if not stat.S_ISREG(mode):  # replaced since the listing
            raise RefusedEntry(f"{_kind(mode)}, not an image file")
        return fh.read()


def check_root(source: LocalDirSource, storage_root: str | None = None) -> tuple[Path, list[Path]]:
    """(resolved source folder, storage folders to leave out); raise `SourceError` when the folder
    is missing, a system folder, or inside the pipeline's storage."""
    root = Path(source.path)
    if not root.is_dir():
        raise SourceError(f"local_dir source {str(root)!r} does not exist or is not a folder")
    real_root = root.resolve()
    reason = system_root_reason(real_root)
    if reason:
        raise SourceError(f"local_dir source {str(root)!r}: refusing to read it: {reason}")
    storage = storage_folders(storage_root)
    home = inside(real_root, storage)
    if home is not None:
        raise SourceError(
            f"local_dir source {str(root)!r} is inside the pipeline's storage root "
            f"{str(home)!r} ($FLUX_DEPTH_HOME): it would read its own outputs; "
            "point `path` at a folder outside it"
        )
    return real_root, [s for s in storage if s.is_relative_to(real_root)]


def list_local_dir(source: LocalDirSource, storage_root: str | None = None) -> list[SourceObject]:
    """Matching entries under the folder, sorted by key; `storage_root`: the run's storage."""
    root = Path(source.path)
    real_root, skip = check_root(source, storage_root)
    out: list[SourceObject] = []
    walker = os.walk(root) if source.recursive else [(str(root), [], os.listdir(root))]
    for dirpath, dirnames, filenames in walker:
        names = sorted(set(dirnames) | set(filenames))
        dirnames[:] = []
        for name in names:
            if name.startswith("."):
                continue
            obj, descend = _entry(root, Path(dirpath) / name, source, real_root, skip)
            if obj is not None:
                out.append(obj)
            if descend:
                dirnames.append(name)
    return sorted(out, key=lambda o: o.key)


def _follow_link(
    path: Path, wanted: bool, real_root: Path, skip: list[Path]
) -> tuple[Path, os.stat_result] | str | None:
    """A symlink's (real path, target's stat) when it may be followed; else why it is rejected,
    or None when it is left out silently (a name the include patterns do not want)."""
    try:
        real = path.resolve(strict=True)
        target = real.stat()
    except (OSError, RuntimeError):  # dangling, or a loop
        return "symbolic link that leads nowhere: not read" if wanted else None
    if stat.S_ISDIR(target.st_mode):  # not followed (its files, if inside, are listed anyway)
        if real.is_relative_to(real_root):
            return None
        return "symbolic link to a folder outside the source folder: not followed"
    if not wanted:
        return None
    if not real.is_relative_to(real_root):
        return "symbolic link that leads outside the source folder: not read"
    if inside(real, skip) is not None:
        return "symbolic link into the pipeline's storage root: not read"
    return real, target


def _entry(
    root: Path, path: Path, source: LocalDirSource, real_root: Path, skip: list[Path]
) -> tuple[SourceObject | None, bool]:
    """(object or None, walk into it) for one directory entry."""
    try:
        st = path.lstat()
    except OSError:  # vanished since the listing
        return None, False
    key = path.relative_to(root).as_posix()
    wanted = matches(path.name, source.include)

    def rejected(reason: str, mtime: float = st.st_mtime) -> tuple[SourceObject, bool]:
        return refused(str(path.absolute()), key, reason, mtime), False

    if stat.S_ISLNK(st.st_mode):
        followed = _follow_link(path, wanted, real_root, skip)
        if not isinstance(followed, tuple):
            return (None, False) if followed is None else rejected(followed)
        real, target = followed
    else:  # walked without following links: the real path is the folder's plus the key
        real, target = real_root / key, st
    if stat.S_ISDIR(target.st_mode):
        if inside(real, skip) is not None:  # the storage root: one row, when it would be walked
            if not source.recursive:
                return None, False
            return rejected(STORAGE_ROOT_REASON, 0.0)
        if wanted:  # still walked, so the images inside are found
            return (
                rejected(
                    "a folder whose name matches the include patterns, not an image "
                    "file" + ("" if source.recursive else " (recursive: false)")
                )[0],
                True,
            )
        return None, True
    if not wanted:
        return None, False
    if not stat.S_ISREG(target.st_mode):
        return rejected(f"{_kind(target.st_mode)}, not an image file: not read")
    return SourceObject(
        uri=str(path.absolute()),
        key=key,
        size=target.st_size,
        mtime=target.st_mtime,
        read=partial(_read, str(real)),
    ), False
