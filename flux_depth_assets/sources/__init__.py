"""Where a catalog's images come from: list objects and read their bytes, per source type."""

from __future__ import annotations

from flux_depth_assets.sources.base import SourceError, SourceObject, list_objects

__all__ = ["SourceError", "SourceObject", "list_objects"]
