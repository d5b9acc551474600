"""The catalog registry sensor, the definitions entry point, and the CLI's config commands."""

from __future__ import annotations

import subprocess
import textwrap

import dagster as dg
import pytest

from flux_depth_assets.cli import main as cli_main
from flux_depth_assets.defs.resources import CatalogsResource
from flux_depth_assets.defs.sensors import catalog_registry_sensor
from tests.commands import REPO, console_script, subprocess_env


def config_with(tmp_path, names):
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True, exist_ok=True)
    body = "catalogs:\n" + "".join(
        f"  - {{name: {n}, source: {{type: local_dir, path: x}}}}\n" for n in names
    )
    (cfg / "catalogs" / "c.yml").write_text(body)
    return cfg


def tick(instance, cfg):
    ctx = dg.build_sensor_context(
        instance=instance, resources={"catalogs": CatalogsResource(config_dir=str(cfg))}
    )
    return catalog_registry_sensor(ctx)


def test_first_tick_adds_every_declared_catalog(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    result = tick(instance, config_with(tmp_path, ["a", "b"]))
    assert isinstance(result, dg.SensorResult)
    [request] = result.dynamic_partitions_requests
    assert request.partition_keys == ["a", "b"]


def test_nothing_new_skips_with_a_reason(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("catalog", ["a"])
    result = tick(instance, config_with(tmp_path, ["a"]))
    assert isinstance(result, dg.SkipReason) and "already have partitions" in result.skip_message


def test_only_new_catalogs_are_added_and_removed_ones_are_kept(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("catalog", ["a", "gone"])
    result = tick(instance, config_with(tmp_path, ["a", "c"]))
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [["c"]]
    assert not any(
        isinstance(r, dg.DeleteDynamicPartitionsRequest) for r in result.dynamic_partitions_requests
    )


def test_invalid_config_leaves_partitions_alone(tmp_path):
    cfg = config_with(tmp_path, ["a"])
    (cfg / "catalogs" / "c.yml").write_text(
        "catalogs: [ {name: BAD!, source: {type: local_dir, path: x}} ]"
    )
    result = tick(dg.DagsterInstance.ephemeral(), cfg)
    assert isinstance(result, dg.SkipReason) and "config invalid" in result.skip_message


def test_definitions_load_with_the_contract_names():
    from flux_depth_assets.definitions import defs

    d = defs() if callable(defs) and not isinstance(defs, dg.Definitions) else defs
    keys = {k.to_user_string() for k in d.resolve_asset_graph().get_all_asset_keys()}
    assert {"source_images", "depth_maps"} <= keys
    job = d.resolve_job_def("catalog_job")
    assert job.partitions_def.name == "catalog"
    assert d.resolve_sensor_def("catalog_registry_sensor")


@pytest.mark.slow
def test_dagster_definitions_validate_passes():
    proc = subprocess.run(
        [console_script("dagster"), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_validate_ok_and_error(tmp_path, capsys):
    assert cli_main(["validate", "--config-dir", str(REPO / "dbt_like_configs")]) == 0
    assert "demo" in capsys.readouterr().out
    cfg = config_with(tmp_path, ["a"])
    (cfg / "catalogs" / "c.yml").write_text(
        textwrap.dedent("""
        catalogs:
          - name: a
            source: {type: local_dir, path: x}
            provider: {name: local, max_side: 5}
    """)
    )
    assert cli_main(["validate", "--config-dir", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "c.yml:5" in err and "catalog 'a'" in err and "provider.max_side" in err


@pytest.mark.slow
def test_cli_materialize_runs_and_reports_failures(tmp_path):
    env_bin = console_script("flux-depth")
    env = subprocess_env(
        FLUX_DEPTH_HOME=str(tmp_path / "h"), DAGSTER_HOME=str(tmp_path / "dh")
    )  # created if missing
    ok = subprocess.run(
        [env_bin, "materialize", "--catalog", "demo", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert "depth_maps" in ok.stdout and str(tmp_path / "h") in ok.stdout
    assert f"instance: {tmp_path / 'dh'}" in ok.stdout
    cfg = config_with(tmp_path, ["broken"])  # its source folder does not exist
    bad = subprocess.run(
        [env_bin, "materialize", "--catalog", "broken", "--config-dir", str(cfg), "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert bad.returncode == 2  # refused by the preflight, before any run
    assert "nothing was run" in bad.stderr and "Traceback" not in bad.stderr
    last = bad.stderr.strip().splitlines()[-1]
    assert "field 'source.path'" in last and "does not exist" in last


def test_environment_selector_makes_prod_secrets_required(monkeypatch):
    from flux_depth_assets.defs.resources import default_resources

    local = default_resources("local")
    assert local["storage"].root is None and local["depth_provider"].eachlabs_api_key is None
    prod = default_resources("prod")
    assert isinstance(prod["depth_provider"].eachlabs_api_key, dg.EnvVar)
    assert isinstance(prod["storage"].root, dg.EnvVar)
    monkeypatch.setenv("FLUX_DEPTH_ENV", "staging")
    with pytest.raises(ValueError, match="local, ci or prod"):
        default_resources()
