"""Depth-derived assets (normal_maps, parallax_sprites, depth_stats): being built (issue 5)."""

DERIVED_ASSETS: list = []
DERIVED_CHECKS: list = []
