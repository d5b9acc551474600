"""Where the pipeline writes: the storage root, table schemas and the provider cache."""

from flux_depth_assets.storage.store import FileIndex, Storage

__all__ = ["FileIndex", "Storage"]
