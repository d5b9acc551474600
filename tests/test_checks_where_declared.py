"""A catalog's run plans only the YAML tests it declares: no "skipped" check, no "did not yield"."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

import dagster as dg

from flux_depth_assets.defs.build import build_definitions
from flux_depth_assets.defs.resources import CatalogsResource
from flux_depth_assets.defs.runner import materialize_catalog
from tests import images

CATALOGS = """
    catalogs:
      - name: shop
        source: {type: local_dir, path: photos}
        schedule: "0 3 * * *"
        tests: [{min_images: {min: 1}}, {valid_depth_ratio: {min: 0.5}}]
      - name: other
        source: {type: local_dir, path: photos}
        schedule: "0 3 * * *"
        tests: [{min_images: {min: 1}}]
"""
YAML_TESTS = {"min_images", "valid_depth_ratio"}


def _config(tmp_path):
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True)
    (cfg / "catalogs" / "c.yml").write_text(textwrap.dedent(CATALOGS))
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(images.jpeg())
    return cfg


def test_a_run_plans_only_the_tests_its_catalog_declares(tmp_path):
    cfg = _config(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    other = materialize_catalog("other", config_dir=cfg, instance=instance)
    assert other.success, other.error
    planned = {
        ev.asset_check_planned_data.asset_check_key.name
        for ev in instance.all_logs(
            other.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
        )
        for ev in [ev.dagster_event]
    }
    assert planned & YAML_TESTS == {"min_images"}  # valid_depth_ratio: declared by shop only
    assert {n.split(":")[1] for n, _, _ in other.checks} & YAML_TESTS == {"min_images"}
    messages = [r.user_message for r in instance.all_logs(other.run_id)]
    assert not [m for m in messages if "did not yield or return expected outputs" in m]
    shop = materialize_catalog("shop", config_dir=cfg, instance=instance)
    assert {n.split(":")[1] for n, _, _ in shop.checks} & YAML_TESTS == YAML_TESTS


def test_a_schedule_requests_only_the_declared_checks(tmp_path):
    cfg = _config(tmp_path)
    defs = build_definitions({"catalogs": CatalogsResource(config_dir=str(cfg))})
    when = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("catalog", ["shop", "other"])
        names = {}
        for catalog in ("shop", "other"):
            [req] = (
                defs.resolve_schedule_def(f"{catalog}__schedule")
                .evaluate_tick(
                    dg.build_schedule_context(
                        instance=instance,
                        scheduled_execution_time=when,
                        repository_def=defs.get_repository_def(),
                    )
                )
                .run_requests
            )
            names[catalog] = {k.name for k in req.asset_check_keys}
            assert "failure_ratio" in names[catalog] and "unit_normals" in names[catalog]
            assert {k.to_user_string() for k in req.asset_selection} >= {
                "source_images",
                "depth_maps",
            }
    assert names["shop"] & YAML_TESTS == YAML_TESTS
    assert names["other"] & YAML_TESTS == {"min_images"}
