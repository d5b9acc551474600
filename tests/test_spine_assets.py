"""source_images → depth_maps through Dagster (in-process, ephemeral instance, tmp storage)."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from flux_depth_assets.defs.runner import materialize_catalog
from tests import images
from tests.catalogs import shop_catalog as make_catalog
from tests.fakes import CALLS, CountingProviderResource


@pytest.fixture(autouse=True)
def calls():
    CALLS.clear()
    return CALLS


def run(cfg, resources=None, **kw):
    instance = kw.pop("instance", None) or dg.DagsterInstance.ephemeral()
    return materialize_catalog(
        "shop", config_dir=cfg, instance=instance, resources=resources or {}, **kw
    ), instance


def home(tmp_path) -> Path:
    return tmp_path / "home"


def test_demo_catalog_gets_a_depth_map_per_photo(tmp_path, demo_dir):
    cfg = make_catalog(
        tmp_path,
        {p.name: p.read_bytes() for p in demo_dir.iterdir()},
        extra="    models: {depth_maps: {write_npy: true}}\n",
    )
    outcome, _ = run(cfg)
    assert outcome.success, outcome.error
    src = pq.read_table(
        home(tmp_path) / "tables/source_images/catalog=shop/part-0.parquet"
    ).to_pylist()
    assert len(src) == len(list(demo_dir.iterdir())) and all(r["status"] == "accepted" for r in src)
    rows = pq.read_table(
        home(tmp_path) / "tables/depth_maps/catalog=shop/part-0.parquet"
    ).to_pylist()
    assert {r["image_id"] for r in rows} == {r["image_id"] for r in src}
    for r, s in zip(rows, src):
        assert r["status"] == "succeeded" and r["provider"] == "local"
        with Image.open(home(tmp_path) / r["depth_path"]) as im:
            assert im.mode.startswith("I;16") or im.mode == "I"
            arr = np.asarray(im)
        assert arr.shape == (s["height"], s["width"])
        assert arr.max() == 65535 and arr.min() >= 1  # full range, no invalid pixels
        npy = np.load(home(tmp_path) / r["npy_path"])
        assert npy.dtype == np.float32 and npy.shape == arr.shape
        assert np.corrcoef(npy.ravel(), arr.ravel())[0, 1] > 0.999  # same map, float precision
    meta = outcome.materialized["depth_maps"]
    assert meta["new"] == len(src) and meta["cached"] == 0 and meta["cost_usd"] == 0.0


def test_rerun_makes_zero_provider_calls(tmp_path):
    cfg = make_catalog(tmp_path, {f"p{i}.jpg": images.jpeg(seed=i) for i in range(3)})
    res = {"depth_provider": CountingProviderResource()}
    first, instance = run(cfg, res)
    assert first.success and sum(CALLS.values()) == 3
    second, _ = run(cfg, res, instance=instance)
    assert second.success and sum(CALLS.values()) == 3
    assert second.materialized["depth_maps"]["cached"] == 3
    assert second.materialized["depth_maps"]["provider_calls"] == 0
    assert second.materialized["source_images"]["unchanged"] == 3


def test_cache_is_shared_and_keyed_by_params(tmp_path):
    cfg = make_catalog(tmp_path, {"a.jpg": images.jpeg(seed=1)})
    run(cfg, {"depth_provider": CountingProviderResource()})
    # wipe the catalog's outputs: the content-addressed cache still answers
    shutil.rmtree(home(tmp_path) / "catalogs" / "shop" / "depth_maps")
    (home(tmp_path) / "tables/depth_maps/catalog=shop/part-0.parquet").unlink()
    again, _ = run(cfg, {"depth_provider": CountingProviderResource()})
    assert again.success and sum(CALLS.values()) == 1
    assert (home(tmp_path) / "catalogs/shop/depth_maps").is_dir()
    # other params → another key → one more call
    run(cfg, {"depth_provider": CountingProviderResource(variant="b")})
    assert sum(CALLS.values()) == 2


def test_bad_files_are_rejected_and_the_run_still_succeeds(tmp_path):
    cfg = make_catalog(
        tmp_path,
        {
            "good1.jpg": images.jpeg(seed=1),
            "good2.png": images.png(seed=2),
            "good3.webp": images.webp(seed=3),
            "renamed.jpg": images.png(seed=4),
            "broken.jpg": images.truncated_jpeg(),
            "empty.png": b"",
            "dup.jpg": images.jpeg(seed=1),
            "notes.txt": b"not matched by include",
        },
    )
    outcome, _ = run(cfg)
    assert outcome.success, outcome.error
    rows = pq.read_table(
        home(tmp_path) / "tables/source_images/catalog=shop/part-0.parquet"
    ).to_pylist()
    by_name = {Path(r["source_uri"]).name: r for r in rows}
    assert "notes.txt" not in by_name
    assert (
        by_name["broken.jpg"]["status"] == "rejected"
        and "truncated" in by_name["broken.jpg"]["reason"]
    )
    assert by_name["empty.png"]["status"] == "rejected"
    assert (
        by_name["renamed.jpg"]["status"] == "accepted" and by_name["renamed.jpg"]["format"] == "PNG"
    )
    statuses = sorted([by_name["dup.jpg"]["status"], by_name["good1.jpg"]["status"]])
    assert statuses == ["accepted", "duplicate"]
    assert outcome.materialized["source_images"]["rejected"] == 2
    assert outcome.materialized["depth_maps"]["images"] == 4


def test_too_many_rejects_fail_the_run_with_a_reason(tmp_path):
    cfg = make_catalog(
        tmp_path,
        {
            "ok.jpg": images.jpeg(),
            "a.jpg": b"x" * 20,
            "b.jpg": b"",
            "c.png": images.truncated_jpeg(),
        },
    )
    outcome, _ = run(cfg)
    assert not outcome.success
    assert "3 of 4 files rejected" in outcome.error and "max_failure_ratio" in outcome.error
    # the manifest was still written: nothing is lost
    assert (home(tmp_path) / "tables/source_images/catalog=shop/part-0.parquet").exists()


def test_provider_failures_are_recorded_until_the_ratio_is_passed(tmp_path):
    files = {f"p{i}.jpg": images.jpeg(seed=i) for i in range(4)}
    cfg = make_catalog(tmp_path, files)
    from flux_depth_assets.imaging.validation import validate_image_bytes

    one = validate_image_bytes(files["p0.jpg"]).image_id
    outcome, _ = run(cfg, {"depth_provider": CountingProviderResource(fail_ids=[one])})
    assert outcome.success  # 1 of 4 = 25% ≤ 50%
    rows = pq.read_table(
        home(tmp_path) / "tables/depth_maps/catalog=shop/part-0.parquet"
    ).to_pylist()
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["image_id"] for r in failed] == [one] and failed[0]["error"] == "fake failure"
    # a re-run retries only the failed image; the cached ones are not called again
    CALLS.clear()
    outcome, _ = run(cfg, {"depth_provider": CountingProviderResource()})
    assert outcome.success and dict(CALLS) == {one: 1}
    # other params (new cache keys) and 3 of 4 failing: over 50%, the run fails, rows are kept
    three = [validate_image_bytes(files[f"p{i}.jpg"]).image_id for i in range(3)]
    outcome, _ = run(cfg, {"depth_provider": CountingProviderResource(fail_ids=three, variant="b")})
    assert not outcome.success and "3 of 4 depth maps failed" in outcome.error
    rows = pq.read_table(
        home(tmp_path) / "tables/depth_maps/catalog=shop/part-0.parquet"
    ).to_pylist()
    assert sorted(r["status"] for r in rows) == ["failed", "failed", "failed", "succeeded"]


def test_unknown_catalog_and_asset_are_refused(tmp_path):
    cfg = make_catalog(tmp_path, {"a.jpg": images.jpeg()})
    with pytest.raises(KeyError, match="unknown catalog"):
        materialize_catalog("nope", config_dir=cfg, instance=dg.DagsterInstance.ephemeral())
    with pytest.raises(KeyError, match="unknown asset"):
        materialize_catalog(
            "shop", assets=["nope"], config_dir=cfg, instance=dg.DagsterInstance.ephemeral()
        )


def test_missing_source_folder_is_refused_before_the_run_with_its_path(tmp_path):
    from flux_depth_assets.config import ConfigErrors

    cfg = make_catalog(tmp_path, {})
    shutil.rmtree(tmp_path / "photos")
    with pytest.raises(ConfigErrors, match="does not exist") as err:
        run(cfg)
    assert "photos" in str(err.value) and "field 'source.path'" in str(err.value)


def test_declared_tests_run_with_the_catalog_and_report_failures(tmp_path):
    cfg = make_catalog(
        tmp_path,
        {"a.jpg": images.jpeg(seed=1)},
        extra="    tests:\n      - min_images: {min: 5}\n      - max_rejected_ratio: {max: 0.5}\n",
    )
    outcome, _ = run(cfg)
    checks = {name: (ok, sev) for name, ok, sev in outcome.checks}
    assert checks["source_images:min_images"] == (False, "ERROR")
    assert checks["source_images:max_rejected_ratio"] == (True, "ERROR")


def test_local_instance_profile_limits_one_run_per_catalog(tmp_path, monkeypatch):
    from tests.conftest import REPO

    (tmp_path / "dh").mkdir()
    shutil.copy(REPO / "deploy" / "local" / "dagster.yaml", tmp_path / "dh" / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert limits == [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]


def test_a_deleted_npy_is_restored_from_the_cache_without_a_call(tmp_path):
    cfg = make_catalog(
        tmp_path,
        {"a.jpg": images.jpeg(seed=1)},
        extra="    models: {depth_maps: {write_npy: true}}\n",
    )
    res = {"depth_provider": CountingProviderResource()}
    _first, instance = run(cfg, res)
    row = pq.read_table(
        home(tmp_path) / "tables/depth_maps/catalog=shop/part-0.parquet"
    ).to_pylist()[0]
    (home(tmp_path) / row["npy_path"]).unlink()
    again, _ = run(cfg, res, instance=instance)
    assert again.success and sum(CALLS.values()) == 1
    assert (home(tmp_path) / row["npy_path"]).exists()
