"""The failure-ratio gate: one implementation, and after a failed gate Dagster and storage agree."""

from __future__ import annotations

import dagster as dg
import pyarrow.parquet as pq
import pytest

from flux_depth_assets.defs.runner import materialize_catalog
from flux_depth_assets.pipeline.gate import evaluate_gate
from tests import images
from tests.catalogs import shop_catalog
from tests.fakes import CountingProviderResource

PER_CATALOG = [
    "source_images",
    "depth_maps",
    "depth_renders",
    "normal_maps",
    "parallax_sprites",
    "depth_stats",
]


@pytest.mark.parametrize(
    "rows,passed",
    [
        ([{"status": "accepted"}] * 3 + [{"status": "rejected"}], True),  # 25% ≤ 50%
        ([{"status": "accepted"}] + [{"status": "rejected"}] * 3, False),  # 75% > 50%
        ([{"status": "succeeded"}, {"status": "failed"}, {"status": "skipped_no_depth"}] * 2, True),
        (
            [{"status": "failed"}] * 2 + [{"status": "skipped_no_depth"}] * 8,
            False,
        ),  # skipped don't dilute
        ([], True),
    ],
)
def test_gate_counts_failed_rows_against_attempted_rows(rows, passed):
    out = evaluate_gate(rows, asset="depth_maps", catalog="shop", threshold=0.5, where="t.parquet")
    assert out.passed is passed
    if not passed:
        assert "over max_failure_ratio 50%" in out.description and "t.parquet" in out.description


def _latest_materialized_partitions(instance: dg.DagsterInstance, asset: str) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey(asset)))


def test_failed_source_gate_leaves_dagster_and_storage_in_agreement(tmp_path):
    cfg = shop_catalog(
        tmp_path,
        {
            "ok.jpg": images.jpeg(),
            "a.jpg": b"x" * 20,
            "b.jpg": b"",
            "c.png": images.truncated_jpeg(),
        },
    )
    instance = dg.DagsterInstance.ephemeral()
    outcome = materialize_catalog("shop", config_dir=cfg, instance=instance)
    assert not outcome.success
    assert outcome.error.startswith(
        "source_images failure_ratio: catalog 'shop': 3 of 4 files rejected"
    )
    # storage holds the source_images table, and Dagster recorded exactly that materialization
    home = tmp_path / "home"
    assert (home / "tables/source_images/catalog=shop/part-0.parquet").exists()
    assert _latest_materialized_partitions(instance, "source_images") == {"shop"}
    # downstream never started: no table, no materialization
    for asset in PER_CATALOG[1:]:
        assert not (home / f"tables/{asset}").exists(), asset
        assert _latest_materialized_partitions(instance, asset) == set(), asset
    gate = [c for c in outcome.checks if c[0] == "source_images:failure_ratio"]
    assert gate == [("source_images:failure_ratio", False, "ERROR")]
    # the lineage row of the materialization says the gate failed, as the check does
    lineage = pq.read_table(home / "tables/lineage/materializations").to_pylist()
    assert [(r["asset"], r["status"]) for r in lineage] == [("source_images", "failed")]


def test_a_later_run_of_a_downstream_asset_refuses_a_failed_upstream_gate(tmp_path):
    cfg = shop_catalog(tmp_path, {"ok.jpg": images.jpeg(), "a.jpg": b"x" * 20, "b.jpg": b""})
    instance = dg.DagsterInstance.ephemeral()
    materialize_catalog("shop", config_dir=cfg, instance=instance)
    again = materialize_catalog(
        "shop",
        assets=["depth_maps"],
        config_dir=cfg,
        instance=instance,
        resources={"depth_provider": CountingProviderResource()},
    )
    assert not again.success
    assert again.error == (
        "depth_maps: upstream source_images failed its failure_ratio gate: "
        "catalog 'shop': 2 of 3 files rejected (67%), over max_failure_ratio "
        f"50%; reasons are in {tmp_path / 'home'}/tables/source_images/"
        "catalog=shop/part-0.parquet"
    )
    assert not (tmp_path / "home/tables/depth_maps").exists()
    assert _latest_materialized_partitions(instance, "depth_maps") == set()


def test_failed_provider_gate_keeps_the_table_and_the_materialization(tmp_path):
    files = {f"p{i}.jpg": images.jpeg(seed=i) for i in range(3)}
    cfg = shop_catalog(tmp_path, files)
    from flux_depth_assets.imaging.validation import validate_image_bytes

    bad = [validate_image_bytes(files[f"p{i}.jpg"]).image_id for i in range(2)]
    instance = dg.DagsterInstance.ephemeral()
    outcome = materialize_catalog(
        "shop",
        config_dir=cfg,
        instance=instance,
        resources={"depth_provider": CountingProviderResource(fail_ids=bad)},
    )
    assert not outcome.success and "2 of 3 depth maps failed (67%)" in outcome.error
    rows = pq.read_table(
        tmp_path / "home/tables/depth_maps/catalog=shop/part-0.parquet"
    ).to_pylist()
    assert sorted(r["status"] for r in rows) == ["failed", "failed", "succeeded"]
    assert _latest_materialized_partitions(instance, "depth_maps") == {"shop"}
    for asset in ("normal_maps", "parallax_sprites", "depth_stats"):
        assert _latest_materialized_partitions(instance, asset) == set(), asset
        assert not (tmp_path / f"home/tables/{asset}").exists(), asset


def test_every_per_catalog_asset_declares_the_blocking_gate():
    from flux_depth_assets.defs.build import PARTITIONED_ASSETS

    by_name = {a.key.to_user_string(): a for a in PARTITIONED_ASSETS}
    for name in PER_CATALOG:  # the assets with per-image rows (catalog_gallery has none)
        a = by_name[name]
        specs = {s.name: s for s in a.check_specs}
        assert specs["failure_ratio"].blocking, a.key
