"""Owners, descriptions and tags declared in the YAML reach the assets, runs, sensors, schedules."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from flux_depth_assets.config import ConfigError, load_project
from flux_depth_assets.defs.build import build_definitions
from flux_depth_assets.defs.constants import TRIGGER_TAG
from flux_depth_assets.defs.resources import CatalogsResource

CATALOGS = """
catalogs:
  - name: shop
    description: Product shots from the studio
    source: {type: local_dir, path: a}
    owners: ["ana@example.com", "team:vision"]
    tags: {cost_center: "42", flux_depth/trigger: not-this}
    schedule: "0 3 * * *"
    upload_sensor: {enabled: false}
  - name: plain
    source: {type: local_dir, path: b}
"""


def write(tmp_path: Path, project: str, catalogs: str = CATALOGS) -> Path:
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True, exist_ok=True)
    (cfg / "flux_depth_project.yml").write_text(project)
    (cfg / "catalogs" / "c.yml").write_text(textwrap.dedent(catalogs))
    return cfg


def definitions(cfg: Path) -> dg.Definitions:
    return build_definitions({"catalogs": CatalogsResource(config_dir=str(cfg))})


def test_owners_and_descriptions_reach_every_asset(tmp_path) -> None:
    defs = definitions(write(tmp_path, 'owners: ["team:data-engineering", "team:vision"]\n'))
    specs = [s for a in defs.assets or [] for s in a.specs]  # type: ignore[union-attr]
    assert {s.key.to_user_string() for s in specs} >= {"source_images", "depth_maps"}
    for spec in specs:
        assert list(spec.owners) == ["team:data-engineering", "team:vision", "ana@example.com"]
        assert spec.description and spec.description.endswith(
            "Catalogs:\n- `shop`: Product shots from the studio"
        )


def test_no_owners_unless_the_yaml_declares_them(tmp_path) -> None:
    plain = "catalogs:\n  - name: plain\n    source: {type: local_dir, path: b}\n"
    defs = definitions(write(tmp_path, "catalog_paths: [catalogs]\n", plain))
    specs = [s for a in defs.assets or [] for s in a.specs]  # type: ignore[union-attr]
    assert specs and all(not s.owners and "Catalogs:" not in (s.description or "") for s in specs)


def test_a_catalogs_tags_owners_and_description_on_its_schedule_sensor_and_runs(tmp_path) -> None:
    defs = definitions(write(tmp_path, "owners: []\n"))
    schedule = defs.resolve_schedule_def("shop__schedule")
    sensor = defs.resolve_sensor_def("shop__upload_sensor")
    for definition in (schedule, sensor):
        assert definition.tags == {"cost_center": "42", TRIGGER_TAG: "not-this"}
        assert list(definition.owners or []) == ["ana@example.com", "team:vision"]
        assert definition.description and "Product shots from the studio" in definition.description
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("catalog", ["shop"])
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 11, 25, 3, tzinfo=UTC),
            repository_def=defs.get_repository_def(),
        )
        [request] = schedule.evaluate_tick(context).run_requests or []
    assert request.tags["cost_center"] == "42"
    assert request.tags[TRIGGER_TAG] == "schedule"  # the system tag wins over the YAML's
    assert request.tags["dagster/partition"] == "shop"  # the run queue's per-catalog limit key


@pytest.mark.parametrize(
    "project, catalog_owner",
    [('owners: ["data-engineering"]\n', "team:x"), ("owners: []\n", "ana")],
)
def test_an_owner_dagster_would_refuse_fails_loading_with_file_and_field(
    tmp_path, project: str, catalog_owner: str
) -> None:
    catalogs = CATALOGS.replace('"team:vision"', f'"{catalog_owner}"')
    with pytest.raises(ConfigError, match="is not an email address or `team:<name>`") as err:
        load_project(write(tmp_path, project, catalogs))
    assert "owners" in str(err.value)
