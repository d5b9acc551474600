"""`depth_maps.normalization: catalog`: derived assets read every map on the catalog's range."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from flux_depth_assets.config.models import DepthMapSettings, ModelSettings
from flux_depth_assets.depth.normalization import catalog_range, to_catalog_scale


def test_catalog_range_ignores_unknown_values() -> None:
    assert catalog_range([(0.2, 0.8), (0.1, 0.5), (None, 0.9), (float("nan"), 1.0)]) == (0.1, 0.8)
    assert catalog_range([(None, None)]) is None
    assert catalog_range([(0.5, 0.5)]) is None


def test_two_frames_of_one_scene_agree_on_the_catalog_scale() -> None:
    """Frame B sees the same surfaces as A plus a nearer object: per image, every shared surface
    changes value (flicker); on the catalog scale they keep theirs."""
    raw_a = np.array([[1.0, 2.0], [3.0, 3.0]])
    raw_b = np.array([[1.0, 2.0], [3.0, 6.0]])
    per_image = [(r - r.min()) / (r.max() - r.min()) for r in (raw_a, raw_b)]
    assert not np.isclose(per_image[0][0, 1], per_image[1][0, 1])  # the flicker
    common = catalog_range([(r.min(), r.max()) for r in (raw_a, raw_b)])
    assert common == (1.0, 6.0)
    a, b = (
        to_catalog_scale(p, (r.min(), r.max()), common) for p, r in zip(per_image, (raw_a, raw_b))
    )
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    np.testing.assert_allclose(b, (raw_b - 1.0) / 5.0, atol=1e-6)


def test_setting_is_validated() -> None:
    assert ModelSettings().depth_maps.normalization == "per_image"
    assert DepthMapSettings(normalization="catalog").normalization == "catalog"
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError):
        DepthMapSettings(normalization="global")  # type: ignore[arg-type]


def test_derived_assets_read_maps_on_the_catalog_range(tmp_path) -> None:
    from flux_depth_assets.depth.encoding import encode_png16, quantize
    from flux_depth_assets.pipeline.derived_run import DepthInput, load_nearness
    from flux_depth_assets.storage.store import Storage

    store = Storage(str(tmp_path))
    raw = np.array([[2.0, 3.0], [4.0, 4.0]], dtype=np.float32)
    q, lo, hi = quantize(raw)
    store.write_bytes("d.png", encode_png16(q))
    own_input = DepthInput(
        image_id="a",
        source_sha256="s",
        normalized_path="n",
        depth_path="d.png",
        depth_sha256="x",
        depth_min=lo,
        depth_max=hi,
        width=2,
        height=2,
    )
    own = load_nearness(store, own_input)
    np.testing.assert_allclose(own, (raw - 2.0) / 2.0, atol=1e-4)
    common = load_nearness(store, replace(own_input, catalog_range=(0.0, 8.0)))
    np.testing.assert_allclose(common, raw / 8.0, atol=1e-4)
