"""Per-catalog schedules and the per-catalog definitions built from the YAML."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

import dagster as dg
import pytest

from flux_depth_assets.config import ConfigError, load_project
from flux_depth_assets.defs.build import build_definitions
from flux_depth_assets.defs.resources import CatalogsResource

CATALOGS = """
catalogs:
  - name: nightly
    source: {type: local_dir, path: a}
    schedule: "0 3 * * *"
    schedule_timezone: Europe/Paris
  - name: both
    source: {type: s3_prefix, bucket: prod-images, prefix: both}
    schedule: "@hourly"
    upload_sensor: {settle_seconds: 60, minimum_interval_seconds: 120}
  - name: watched
    source: {type: local_dir, path: b}
    upload_sensor: {enabled: false}
  - name: plain
    source: {type: local_dir, path: c}
"""


def write(tmp_path, text: str):
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True, exist_ok=True)
    (cfg / "catalogs" / "c.yml").write_text(textwrap.dedent(text))
    return cfg


def test_each_catalog_gets_the_sensor_and_schedule_it_declares(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # loading must not call S3
    cfg = write(tmp_path, CATALOGS)
    defs = build_definitions({"catalogs": CatalogsResource(config_dir=str(cfg))})
    dg.Definitions.validate_loadable(defs)  # its load time: benchmarks/definitions_load.py
    schedules = {s.name: s for s in defs.schedules}
    sensors = {s.name: s for s in defs.sensors}
    assert set(schedules) == {"nightly__schedule", "both__schedule"}
    assert set(sensors) == {
        "catalog_registry_sensor",
        "both__upload_sensor",
        "watched__upload_sensor",
    }
    nightly = schedules["nightly__schedule"]
    assert nightly.cron_schedule == "0 3 * * *" and nightly.execution_timezone == "Europe/Paris"
    assert nightly.job_name == "catalog_job"
    assert nightly.default_status == dg.DefaultScheduleStatus.RUNNING
    assert sensors["both__upload_sensor"].minimum_interval_seconds == 120
    assert sensors["both__upload_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors["watched__upload_sensor"].default_status == dg.DefaultSensorStatus.STOPPED


def test_schedule_requests_the_catalogs_partition_with_a_deterministic_key(tmp_path):
    cfg = write(tmp_path, CATALOGS)
    defs = build_definitions({"catalogs": CatalogsResource(config_dir=str(cfg))})
    schedule = defs.resolve_schedule_def("nightly__schedule")
    with dg.instance_for_test() as instance:  # schedule contexts need an instance ref
        _check_ticks(schedule, instance, defs.get_repository_def())


def _check_ticks(schedule, instance, repo):
    when = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)

    def evaluate():
        return schedule.evaluate_tick(
            dg.build_schedule_context(
                instance=instance, scheduled_execution_time=when, repository_def=repo
            )
        )

    skip = evaluate()
    assert not skip.run_requests and "no `catalog` partition yet" in skip.skip_message

    instance.add_dynamic_partitions("catalog", ["nightly"])
    [req] = evaluate().run_requests
    assert req.partition_key == "nightly" and "flux_depth/catalog" not in req.tags
    assert req.tags["flux_depth/trigger"] == "schedule"
    [again] = evaluate().run_requests
    assert again.run_key == req.run_key == f"schedule:nightly:{when.isoformat()}"


@pytest.mark.parametrize(
    "line, field",
    [
        ('    schedule: "61 * * * *"', "schedule"),
        ('    schedule: "0 0 30 2 *"', "schedule"),  # February 30th never comes
        ('    schedule: "0 0 3 * * *"', "schedule"),  # a seconds field: Dagster takes five
        ("    schedule_timezone: Mars/Olympus", "schedule_timezone"),
        ("    upload_sensor: {settle_secs: 5}", "upload_sensor.settle_secs"),
        (
            "    upload_sensor: {minimum_interval_seconds: 1}",
            "upload_sensor.minimum_interval_seconds",
        ),
    ],
)
def test_bad_schedule_or_sensor_settings_name_file_line_and_field(tmp_path, line, field):
    cfg = write(
        tmp_path, "catalogs:\n  - name: x\n    source: {type: local_dir, path: a}\n" + line + "\n"
    )
    with pytest.raises(ConfigError) as err:
        load_project(cfg)
    assert "c.yml:4" in str(err.value) and f"field '{field}'" in str(err.value)
    with pytest.raises(ConfigError):  # and the code location refuses to load, saying why
        build_definitions({"catalogs": CatalogsResource(config_dir=str(cfg))})
