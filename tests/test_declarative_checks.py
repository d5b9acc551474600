"""YAML `tests:` → asset checks: the pure test logic, config errors, and checks run by Dagster."""

from __future__ import annotations

import textwrap

import dagster as dg
import pyarrow as pa
import pytest

from flux_depth_assets.config import ConfigError, load_project
from flux_depth_assets.config.models import DeclaredTest
from flux_depth_assets.defs.build import build_definitions
from flux_depth_assets.defs.declarative_checks import build_declarative_checks
from flux_depth_assets.defs.resources import CatalogsResource, StorageResource
from flux_depth_assets.pipeline.declarative_tests import TEST_ASSETS, run_test
from flux_depth_assets.storage.store import Storage
from tests import images
from tests.fakes import CountingProviderResource

TESTS = set(TEST_ASSETS)  # the checks built from YAML (other modules add their own checks)


def declared(entry: dict) -> DeclaredTest:
    return DeclaredTest.model_validate(entry)


@pytest.fixture
def store(tmp_path) -> Storage:
    return Storage(str(tmp_path / "home"))


def write_stats(store: Storage, rows: list[dict], catalog: str = "c") -> None:
    store.write_partition("depth_stats", catalog, pa.Table.from_pylist(rows))


def write_sources(store: Storage, statuses: list[str], catalog: str = "c") -> None:
    rows = [
        {"image_id": f"i{n}", "status": s, "reason": "bad magic: x" if s == "rejected" else None}
        for n, s in enumerate(statuses)
    ]
    store.write_partition("source_images", catalog, pa.Table.from_pylist(rows))


STATS = [
    {"image_id": "a", "status": "succeeded", "valid_fraction": 1.0, "p1": 0.05, "p99": 0.90},
    {"image_id": "b", "status": "cached", "valid_fraction": 0.97, "p1": 0.10, "p99": 0.95},
    {"image_id": "c", "status": "succeeded", "valid_fraction": 0.80, "p1": 0.40, "p99": 0.50},
    {"image_id": "d", "status": "failed", "valid_fraction": None, "p1": None, "p99": None},
]


@pytest.mark.parametrize(
    "entry, passed, text",
    [
        ({"valid_depth_ratio": {"min": 0.95}}, False, "1 of 3 images have valid_fraction < 0.95"),
        ({"valid_depth_ratio": {"min": 0.8}}, True, "all 3 images have valid_fraction ≥ 0.8"),
        (
            {"valid_depth_ratio": {"min": 0.9, "aggregate": "mean"}},
            True,
            "mean valid_fraction 0.923 ≥ 0.9",
        ),
        ({"depth_range": {"p99_minus_p1_min": 0.2}}, False, "1 of 3 images have p99 - p1 < 0.2"),
        ({"depth_range": {"p99_minus_p1_min": 0.05}}, True, "all 3 images"),
    ],
)
def test_depth_stats_tests(store, entry, passed, text):
    write_stats(store, STATS)
    outcome = run_test(declared(entry), store, "c")
    assert outcome.passed is passed and text in outcome.description
    if not passed:
        assert outcome.metadata["worst"].startswith("c=")


def test_depth_stats_read_defensively(store):
    missing = run_test(declared({"valid_depth_ratio": {"min": 0.5}}), store, "c")
    assert not missing.passed and "no depth_stats table for catalog 'c'" in missing.description
    write_stats(store, [{"image_id": "a", "status": "succeeded", "p50": 0.3, "p1": 0.1}])
    no_col = run_test(declared({"valid_depth_ratio": {"min": 0.5}}), store, "c")
    assert not no_col.passed and "depth_stats has no valid_fraction column" in no_col.description
    no_cols = run_test(declared({"depth_range": {"p99_minus_p1_min": 0.1}}), store, "c")
    assert not no_cols.passed and "depth_stats has no p99 column" in no_cols.description
    write_stats(
        store,
        [
            {"image_id": "a", "status": "failed", "valid_fraction": None},
            {"image_id": "b", "status": "skipped_no_depth", "valid_fraction": 1.0},
        ],
    )
    empty = run_test(declared({"valid_depth_ratio": {"min": 0.5}}), store, "c")
    assert not empty.passed and "no image has a valid_fraction value" in empty.description


def test_source_images_tests(store):
    write_sources(store, ["accepted"] * 17 + ["duplicate"] * 2 + ["rejected"])
    ok = run_test(declared({"max_rejected_ratio": {"max": 0.05}}), store, "c")
    assert ok.passed and ok.metadata["rejected"] == 1 and ok.metadata["files"] == 20
    strict = run_test(declared({"max_rejected_ratio": {"max": 0.01}}), store, "c")
    assert not strict.passed and "bad magic (1)" in strict.metadata["top_reasons"]
    assert run_test(declared({"min_images": {"min": 17}}), store, "c").passed
    assert not run_test(declared({"min_images": {"min": 18}}), store, "c").passed


def config(tmp_path, tests_yaml: str, other_tests: str = "[]"):
    for name in ("shop", "other"):
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        for seed in range(3):
            (d / f"p{seed}.jpg").write_bytes(
                images.jpeg(seed=seed + (10 if name == "other" else 0))
            )
    (tmp_path / "shop" / "broken.jpg").write_bytes(images.truncated_jpeg())
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True, exist_ok=True)
    (cfg / "catalogs" / "c.yml").write_text(
        textwrap.dedent(f"""
        catalogs:
          - name: shop
            source: {{type: local_dir, path: shop}}
            max_failure_ratio: 0.5
            tests: {tests_yaml}
          - name: other
            source: {{type: local_dir, path: other}}
            tests: {other_tests}
    """)
    )
    return cfg


def test_unknown_test_and_bad_arguments_fail_validation_with_file_and_field(tmp_path):
    cfg = config(tmp_path, "[{max_rejected_ratio: {max: 0.05}}, {valid_depth_ration: {min: 0.9}}]")
    with pytest.raises(ConfigError) as err:
        load_project(cfg)
    msg = str(err.value)
    assert "c.yml:6" in msg and "catalog 'shop'" in msg and "field 'tests[1]'" in msg
    assert "unknown test 'valid_depth_ration'" in msg and "valid_depth_ratio" in msg
    cfg = config(tmp_path, "[{depth_range: {p99_minus_p1_min: high}}]")
    with pytest.raises(ConfigError, match=r"field 'tests\[0\]\.depth_range\.p99_minus_p1_min'"):
        load_project(cfg)


def test_checks_are_built_per_declared_test_on_the_asset_they_read(tmp_path):
    cfg = config(
        tmp_path,
        "[{valid_depth_ratio: {min: 0.9}}, {max_rejected_ratio: {max: 0.1}}]",
        "[{max_rejected_ratio: {max: 0.5, severity: warn}}]",
    )
    catalogs = list(load_project(cfg).catalogs.values())
    checks = build_declarative_checks(catalogs)
    specs = {(s.asset_key.to_user_string(), s.name): s for c in checks for s in c.check_specs}
    assert set(specs) == {
        ("depth_stats", "valid_depth_ratio"),
        ("source_images", "max_rejected_ratio"),
    }
    assert specs[("source_images", "max_rejected_ratio")].metadata["declared_by"] == "shop, other"
    assert "shop:" in specs[("depth_stats", "valid_depth_ratio")].description


def test_checks_run_with_the_catalogs_partition_and_arguments(tmp_path):
    cfg = config(
        tmp_path,
        "[{max_rejected_ratio: {max: 0.1}}, {min_images: {min: 3}}, "
        "{valid_depth_ratio: {min: 0.5}}, {depth_range: {p99_minus_p1_min: 0.01}}]",
        "[{max_rejected_ratio: {max: 0.5, severity: warn}}]",
    )
    defs = build_definitions(
        {
            "catalogs": CatalogsResource(config_dir=str(cfg)),
            "storage": StorageResource(root=str(tmp_path / "home")),
            "depth_provider": CountingProviderResource(),
        }
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("catalog", ["shop", "other"])
    job = defs.resolve_job_def("catalog_job")

    shop = job.execute_in_process(partition_key="shop", instance=instance, raise_on_error=False)
    evals = {e.check_name: e for e in shop.get_asset_check_evaluations() if e.check_name in TESTS}
    assert set(evals) == {"max_rejected_ratio", "min_images", "valid_depth_ratio", "depth_range"}
    assert not evals["max_rejected_ratio"].passed  # 1 of 4 files rejected > 10 %
    assert evals["max_rejected_ratio"].severity == dg.AssetCheckSeverity.ERROR
    assert evals["max_rejected_ratio"].metadata["rejected_ratio"].value == 0.25
    assert evals["min_images"].passed and evals["valid_depth_ratio"].passed
    assert evals["depth_range"].passed
    assert all(e.partition == "shop" for e in evals.values())
    assert shop.dagster_run.tags["dagster/partition"] == "shop"

    other = job.execute_in_process(partition_key="other", instance=instance, raise_on_error=False)
    [only] = [e for e in other.get_asset_check_evaluations() if e.check_name in TESTS]
    assert only.check_name == "max_rejected_ratio" and only.passed
    assert only.severity == dg.AssetCheckSeverity.WARN and only.partition == "other"
