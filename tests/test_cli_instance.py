"""`flux-depth materialize` runs on the UI's instance and can produce `catalog_summary`."""

from __future__ import annotations

import dagster as dg

from flux_depth_assets.cli import main
from tests.catalogs import shop_catalog


def test_cli_runs_land_in_the_projects_dagster_home_with_the_partition_tag(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    cfg = shop_catalog(tmp_path, 1)
    code = main(
        [
            "materialize",
            "--catalog",
            "shop",
            "--config-dir",
            str(cfg),
            "--quiet",
            "--assets",
            "source_images,depth_maps,catalog_summary",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    home = tmp_path / ".dagster_home"  # the project's instance, created with make dev's config
    assert (
        "run_queue" in (home / "dagster.yaml").read_text()
        or "QueuedRunCoordinator" in (home / "dagster.yaml").read_text()
    )
    assert f"instance: {home}" in out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2  # the catalog's run, then catalog_summary's own
        by_id = {r.run_id: r for r in runs}
        for run_id, run in by_id.items():
            assert f"http://127.0.0.1:3000/runs/{run_id}" in out
            assert run.status == dg.DagsterRunStatus.SUCCESS
        tagged = [r for r in runs if r.tags.get("dagster/partition") == "shop"]
        assert len(tagged) == 1 and "flux_depth/catalog" not in tagged[0].tags
        assert instance.get_latest_materialization_event(dg.AssetKey("catalog_summary"))
    assert (tmp_path / "home/tables/catalog_summary/part-0.parquet").exists()
    assert "catalog_summary" in out


def test_catalog_summary_alone_needs_no_catalog(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    (tmp_path / "dh").mkdir()
    cfg = shop_catalog(tmp_path, 1)
    assert main(["materialize", "--assets", "catalog_summary", "--config-dir", str(cfg)]) == 0
    assert (tmp_path / "home/tables/catalog_summary/part-0.parquet").exists()
    assert main(["materialize", "--config-dir", str(cfg)]) == 2
    assert "--catalog is required" in capsys.readouterr().err
