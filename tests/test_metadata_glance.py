"""Materialization metadata a person reads at a glance: pictures, USD text, no repeated paths."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import dagster as dg
from PIL import Image

from flux_depth_assets.defs.runner import materialize_catalog
from flux_depth_assets.pipeline.contact_sheet import MAX_BYTES, THUMB_H
from tests.catalogs import shop_catalog
from tests.fakes import CountingProviderResource

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo_catalog"


def _sheet(md: str) -> Image.Image:
    match = re.fullmatch(
        r"!\[contact sheet: [^\]]+\]\(data:image/jpeg;base64,([A-Za-z0-9+/=]+)\)", md
    )
    assert match, md[:120]
    data = base64.b64decode(match.group(1))
    assert len(data) <= MAX_BYTES
    return Image.open(io.BytesIO(data))


def test_partitions_show_a_contact_sheet_usd_text_and_each_path_once(tmp_path):
    cfg = shop_catalog(tmp_path, {p.name: p.read_bytes() for p in sorted(DEMO.iterdir())[:2]})
    out = materialize_catalog(
        "shop",
        config_dir=cfg,
        instance=dg.DagsterInstance.ephemeral(),
        log_level="WARNING",
        resources={"depth_provider": CountingProviderResource(price_usd=0.05)},
    )
    assert out.success, out.error
    depth, sprites = out.materialized["depth_maps"], out.materialized["parallax_sprites"]
    assert depth["cost_usd"] == 0.1 and depth["cost"] == "$0.10 USD"
    first = _sheet(depth["contact_sheet"])
    assert first.height >= 2 * THUMB_H  # two images, one row each
    # after parallax_sprites the sheet has its 4th column: the sway preview's first frame
    assert _sheet(sprites["contact_sheet"]).width > first.width
    for asset, meta in out.materialized.items():
        paths = out.paths[asset]
        assert len(paths) == len(set(paths)), (asset, paths)
        if "preview" in meta:
            cells = [c for line in meta["preview"].splitlines()[2:] for c in line.split("|")]
            assert not any("/" in c for c in cells), (asset, meta["preview"])
