"""Where a catalog's images come from: list objects and read their bytes, per source type."""

from __future__ import annotations

from flux_depth_assets.sources.base import (
    Fetched,
    SourceError,
    SourceObject,
    Validators,
    list_objects,
)

__all__ = ["Fetched", "SourceError", "SourceObject", "Validators", "list_objects"]
