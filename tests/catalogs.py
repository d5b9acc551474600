"""A throw-away catalog `shop` (config + photos under tmp_path), shared by the asset tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests import images

SHOP_YAML = """
    catalogs:
      - name: shop
        source: {type: local_dir, path: photos}
        max_failure_ratio: 0.5
"""


def write_shop_config(tmp_path: Path, extra: str = "") -> Path:
    """`tmp_path/cfg` declaring `shop` over `tmp_path/photos`; `extra` adds catalog keys."""
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True, exist_ok=True)
    (cfg / "catalogs" / "c.yml").write_text(textwrap.dedent(SHOP_YAML) + extra)
    return cfg


def shop_catalog(tmp_path: Path, files: dict[str, bytes] | int, extra: str = "") -> Path:
    """Photos (a name → bytes dict, or N synthetic JPEGs p0..pN-1) plus the `shop` config."""
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    if isinstance(files, int):
        files = {f"p{i}.jpg": images.jpeg(seed=i) for i in range(files)}
    for name, data in files.items():
        (photos / name).write_bytes(data)
    return write_shop_config(tmp_path, extra)
