"""Folders a `local_dir` source may not read: system roots, and the pipeline's own storage.

A source that walks `/` reads the whole machine; one that holds the storage root re-ingests the
pipeline's outputs (normalised copies, depth maps) as new images, and pays for them, on every
run. Plain path functions: `config.models` uses them to refuse a source at validation (file and
line in the error), `local_dir` again after symlinks are resolved, `s3_prefix` for an `s3://`
storage root, and the upload sensor to leave the storage subtree out of what it watches.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from flux_depth_assets.paths import default_home

# Exact folders that are never a catalog: the file system root, the top-level system folders
# (Linux and macOS), and the user's home folder itself (a sub-folder of it is fine).
SYSTEM_ROOTS = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/media",
        "/mnt",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/snap",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/usr/local",
        "/var",
        "/Applications",
        "/Library",
        "/System",
        "/Users",
        "/Volumes",
        "/private",
        "/cores",
    }
)
# Whole trees that hold no images and where reading can hang or leak (pseudo files, devices).
SYSTEM_TREES = ("/proc", "/sys", "/dev", "/etc", "/boot")
STORAGE_ROOT_REASON = (
    "the pipeline's storage root ($FLUX_DEPTH_HOME): a source never reads the "
    "pipeline's own outputs; keep them apart"
)


def system_root_reason(path: str | os.PathLike[str]) -> str | None:
    """Why `path` (absolute, or starting with `~`) may not be a source folder, or None.

    Relative paths are judged after the loader resolved them (they depend on the project root).
    """
    text = os.path.expanduser(os.fspath(path))
    if not os.path.isabs(text):
        return None
    norm = os.path.normpath(text)
    if norm.startswith("//"):  # POSIX keeps a leading '//'; it is still the root
        norm = "/" + norm.lstrip("/")
    home = os.path.normpath(os.path.expanduser("~"))
    if norm in SYSTEM_ROOTS:
        return f"{norm!r} is a system folder, not a catalog of images"
    if norm == home or home.startswith(norm.rstrip("/") + "/"):
        return f"{norm!r} is (or holds) the home folder; point `path` at the folder of images"
    for tree in SYSTEM_TREES:
        if norm.startswith(tree + "/"):
            return f"{norm!r} is inside the system folder {tree!r}"
    return None


def storage_folders(storage_root: str | None = None) -> list[Path]:
    """The local storage roots a source must not read, resolved: `$FLUX_DEPTH_HOME` (or its
    default) and the run's own root when it is another local folder. `s3://` roots are skipped."""
    out: list[Path] = []
    for root in (default_home(), storage_root):
        if not root:
            continue
        if root.startswith("file://"):
            root = root[len("file://") :]
        elif "://" in root:
            continue
        real = Path(root).expanduser().resolve()
        if real not in out:
            out.append(real)
    return out


def s3_storage_prefixes(storage_root: str | None = None) -> list[tuple[str, str]]:
    """(bucket, key prefix: "" or ending in "/") of the `s3://` storage roots, as above."""
    out: list[tuple[str, str]] = []
    for root in (default_home(), storage_root):
        if root and root.startswith("s3://"):
            bucket, _, prefix = root[len("s3://") :].partition("/")
            prefix = prefix.strip("/")
            item = (bucket, f"{prefix}/" if prefix else "")
            if item not in out:
                out.append(item)
    return out


def inside(path: Path, folders: Iterable[Path]) -> Path | None:
    """The first of `folders` that is `path` or holds it (all paths resolved)."""
    return next((f for f in folders if path == f or path.is_relative_to(f)), None)
