"""`local_dir` sources: files under a folder, matched by glob, symlinks out of the folder refused."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from flux_depth_assets.config.models import LocalDirSource
from flux_depth_assets.sources.base import SourceError, SourceObject, matches


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def list_local_dir(source: LocalDirSource) -> list[SourceObject]:
    root = Path(source.path)
    if not root.is_dir():
        raise SourceError(f"local_dir source {str(root)!r} does not exist or is not a folder")
    real_root = root.resolve()
    out: list[SourceObject] = []
    walker = os.walk(root) if source.recursive else [(str(root), [], os.listdir(root))]
    for dirpath, dirnames, filenames in walker:
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not matches(name, source.include):
                continue
            path = Path(dirpath) / name
            try:
                real = path.resolve()
                if not real.is_file() or not real.is_relative_to(real_root):
                    continue  # dangling link, or a link that escapes the catalog folder
                st = real.stat()
            except OSError:
                continue
            key = path.relative_to(root).as_posix()
            out.append(SourceObject(uri=str(path.absolute()), key=key, size=st.st_size,
                                    mtime=st.st_mtime, read=partial(_read, str(real))))
    return sorted(out, key=lambda o: o.key)
