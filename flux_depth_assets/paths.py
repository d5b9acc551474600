"""Path-safety and location defaults shared by every module that names a file."""

from __future__ import annotations

import os
import re
from pathlib import Path

HOME_ENV = "FLUX_DEPTH_HOME"
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]*$")


class UnsafePathError(ValueError):
    """A name would escape its folder (path traversal) or is not a plain file name."""


def safe_segment(name: str) -> str:
    """Return `name` if it is one plain path segment; refuse `..`, slashes and hidden names."""
    if not _SEGMENT_RE.match(name or "") or ".." in name:
        raise UnsafePathError(
            f"unsafe path segment {name!r}: only letters, digits and ._=- "
            "are allowed, no '..', no leading dot or slash"
        )
    return name


def project_root() -> Path:
    """The repository root (the folder holding `pyproject.toml`) when running from a checkout."""
    return Path(__file__).resolve().parents[1]


def default_home() -> str:
    """`$FLUX_DEPTH_HOME`, else `./flux_depth_home` under the repository root."""
    return os.environ.get(HOME_ENV) or str(project_root() / "flux_depth_home")
