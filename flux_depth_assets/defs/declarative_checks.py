"""YAML `tests:` → Dagster asset checks (the dbt-like part).

Every test name declared by at least one catalog becomes one asset check on the asset whose table
it reads (`valid_depth_ratio` and `depth_range` on `depth_stats`, `max_rejected_ratio` and
`min_images` on `source_images`). The checks are partitioned by `catalog` like their assets, so the
UI shows each catalog's result as a partition of the check; a run of catalog X evaluates X's
declared tests with X's arguments. Runs we launch (CLI, schedules) select only the checks X
declares (`check_selection`), so an undeclared test is not planned for X: no "skipped" result, no
"did not yield expected outputs" line. A run launched by hand from the UI selects every check
of its assets; there the undeclared ones stay unevaluated for X.
Arguments are re-read from the YAML at run time, so editing a threshold needs no code reload.
"""

import warnings
from collections import defaultdict
from collections.abc import Iterable

import dagster as dg

from flux_depth_assets.config.models import CatalogConfig
from flux_depth_assets.defs.constants import CATALOG_PARTITIONS
from flux_depth_assets.defs.resources import CatalogsResource, StorageResource
from flux_depth_assets.pipeline.declarative_tests import TEST_ASSETS, run_test


def _describe(test_name: str, catalogs: list[CatalogConfig]) -> str:
    first = next(t.args for t in catalogs[0].tests if t.name == test_name)
    doc = type(first).__doc__ or ""
    declared = []
    for cat in catalogs:
        args = next(t.args for t in cat.tests if t.name == test_name)
        declared.append(f"{cat.name}: {args.model_dump_json(exclude_defaults=False)}")
    return (
        f"Declared in the catalog YAML (`tests: [{{{test_name}: ...}}]`). {doc.strip()} "
        f"Declared by {'; '.join(declared)}."
    )


DECLARATIVE_SUFFIX = "__declarative_tests"


def check_selection(
    check_keys: Iterable[dg.AssetCheckKey], catalog: CatalogConfig
) -> set[dg.AssetCheckKey]:
    """`check_keys` without the YAML tests `catalog` does not declare."""
    declared = {(TEST_ASSETS[t.name], t.name) for t in catalog.tests}
    return {
        key
        for key in check_keys
        if key.name not in TEST_ASSETS or (key.asset_key.to_user_string(), key.name) in declared
    }


def build_declarative_checks(catalogs: Iterable[CatalogConfig]) -> list[dg.AssetChecksDefinition]:
    """One multi-check per target asset, with a partitioned spec per declared test name."""
    by_test: dict[str, list[CatalogConfig]] = defaultdict(list)
    for cat in catalogs:
        for test in cat.tests:
            by_test[test.name].append(cat)
    by_asset: dict[str, list[str]] = defaultdict(list)
    for test_name in sorted(by_test):
        by_asset[TEST_ASSETS[test_name]].append(test_name)
    with warnings.catch_warnings():  # partitioned check specs are a Dagster "preview" feature
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            _checks_for_asset(asset, names, by_test) for asset, names in sorted(by_asset.items())
        ]


def _checks_for_asset(
    asset: str, test_names: list[str], by_test: dict[str, list[CatalogConfig]]
) -> dg.AssetChecksDefinition:
    specs = [
        dg.AssetCheckSpec(
            name=name,
            asset=asset,
            partitions_def=CATALOG_PARTITIONS,
            description=_describe(name, by_test[name]),
            metadata={"declared_by": ", ".join(c.name for c in by_test[name])},
        )
        for name in test_names
    ]

    @dg.multi_asset_check(
        specs=specs,
        can_subset=True,
        name=f"{asset}{DECLARATIVE_SUFFIX}",
        description=f"The YAML-declared tests on {asset}, per catalog.",
    )
    def _declarative_tests(
        context: dg.AssetCheckExecutionContext, storage: StorageResource, catalogs: CatalogsResource
    ):
        catalog = catalogs.load().catalog(context.partition_key)
        store = storage.get()
        selected = {key.name for key in context.selected_asset_check_keys}
        for test in catalog.tests:
            if test.name not in selected:
                continue  # not in this run's selection, or its asset is not defined
            outcome = run_test(test, store, catalog.name)
            context.log.info(f"{catalog.name}: {outcome.description}")
            yield dg.AssetCheckResult(
                asset_key=asset,
                check_name=test.name,
                passed=outcome.passed,
                severity=(
                    dg.AssetCheckSeverity.WARN
                    if test.args.severity == "warn"
                    else dg.AssetCheckSeverity.ERROR
                ),
                description=outcome.description,
                metadata={
                    "catalog": catalog.name,
                    "arguments": test.args.model_dump_json(),
                    **outcome.metadata,
                },
            )

    return _declarative_tests
