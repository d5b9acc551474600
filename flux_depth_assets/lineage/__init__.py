"""Lineage, cost and analytics tables in Parquet (`tables/lineage/...`); contract in docs/lineage.md.

- `schemas`: the Arrow schemas and hive partitioning, declared once.
- `writer`: append one file per run/asset/table/partition, atomically.
- `record.record_lineage`: one step's rows (`defs/lineage.py` calls it from an asset's context).
- `compact`: merge small files without losing or duplicating a row.
- `queries`: spend by catalog/asset/day, per-catalog totals.
- `estimate`: pending images and their cost, without calling a provider.
"""

from flux_depth_assets.lineage.schemas import (
    MATERIALIZATIONS,
    PARTITION_SCHEMA,
    PROVIDER_CALLS,
    TABLES,
)
from flux_depth_assets.lineage.writer import calls_from_rows, config_hash, redact, write_rows

__all__ = [
    "MATERIALIZATIONS",
    "PARTITION_SCHEMA",
    "PROVIDER_CALLS",
    "TABLES",
    "calls_from_rows",
    "config_hash",
    "redact",
    "write_rows",
]
