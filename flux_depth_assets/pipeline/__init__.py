"""Plain-Python pipelines the assets call: scanning a catalog, producing depth maps."""
