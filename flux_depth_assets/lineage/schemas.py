"""The lineage tables' contract: Arrow schemas declared once, the partitioning, the file layout.

Layout (under the storage root, e.g. `$FLUX_DEPTH_HOME`):

    tables/lineage/<table>/catalog=<catalog>/date=<YYYY-MM-DD>/<file>.parquet

`catalog` and `date` live only in the hive directory names, not in the files, so pandas,
`pyarrow.dataset` and DuckDB each see them once, as partition columns. `date` is the UTC day the
materialization started. Every file is written with exactly one of the schemas below; readers
never have to guess a type. Documented column by column in `docs/lineage.md`.
"""

from __future__ import annotations

import pyarrow as pa

from flux_depth_assets.storage.schemas import columns

SCHEMA_VERSION = "1"
ROOT = "tables/lineage"

TS = pa.timestamp("us", tz="UTC")

PROVIDER_CALLS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("asset", pa.string(), nullable=False),  # the asset that asked, e.g. depth_maps
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("source_sha256", pa.string()),  # input content hash (original file bytes)
        pa.field("output_sha256", pa.string()),  # sha256 of the written output file
        pa.field("output_path", pa.string()),  # relative to the storage root
        pa.field("provider", pa.string()),
        pa.field("model", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("params_hash", pa.string()),
        pa.field("cache_key", pa.string()),  # sha256(source, provider, model, params)
        pa.field("prediction_id", pa.string()),  # host's id; for cached rows, the original call's
        pa.field(
            "status", pa.string(), nullable=False
        ),  # succeeded | failed | cached | skipped_budget
        pa.field("cached", pa.bool_(), nullable=False),
        pa.field("attempts", pa.int32()),  # HTTP attempts in this run; 0 when cached/skipped
        pa.field("http_status", pa.int32()),  # of the last attempt
        pa.field("latency_s", pa.float64()),
        pa.field("cost_usd", pa.float64(), nullable=False),  # 0 for cached and skipped rows
        pa.field("started_at", TS),
        pa.field("finished_at", TS),
        pa.field("error", pa.string()),  # redacted: never holds a secret
        pa.field("resumed", pa.bool_()),  # finished a prediction an earlier run made
        pa.field("uncertain_attempts", pa.int32()),  # creates sent without an answer (maybe paid)
        pa.field("uncertain_cost_usd", pa.float64()),  # what those may have cost (not in cost_usd)
        pa.field("host", pa.string()),  # who served it: eachlabs | replicate | bfl;
        # null: local/onnx, cached, skipped, old rows
    ],
    metadata={"flux_depth.table": "provider_calls", "flux_depth.schema_version": SCHEMA_VERSION},
)

MATERIALIZATIONS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("asset", pa.string(), nullable=False),
        pa.field(
            "status", pa.string(), nullable=False
        ),  # succeeded | failed (failed after spending)
        pa.field("code_version", pa.string()),
        pa.field("config_hash", pa.string()),
        *columns(
            pa.int64(),
            "images_in",
            "images_new",
            "images_cached",
            "images_failed",
            "images_rejected",
            "images_skipped_budget",
        ),
        pa.field("provider_calls", pa.int64()),  # paid/attempted calls (not cache hits)
        pa.field("cost_usd", pa.float64(), nullable=False),
        pa.field("seconds", pa.float64()),
        pa.field("started_at", TS),
        pa.field("finished_at", TS),
    ],
    metadata={"flux_depth.table": "materializations", "flux_depth.schema_version": SCHEMA_VERSION},
)

TABLES: dict[str, pa.Schema] = {
    "provider_calls": PROVIDER_CALLS,
    "materializations": MATERIALIZATIONS,
}

# The hive directory columns. `date` is typed as a date so filters compare dates, not strings.
PARTITION_SCHEMA = pa.schema([pa.field("catalog", pa.string()), pa.field("date", pa.date32())])

CALL_STATUSES = ("succeeded", "failed", "cached", "skipped_budget")


def full_schema(table: str) -> pa.Schema:
    """A table's schema as readers see it: file columns plus the `catalog` and `date` partitions."""
    schema = TABLES[table]
    for f in PARTITION_SCHEMA:
        schema = schema.append(f)
    return schema


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns, in order and type; missing columns become nulls.

    Used when reading files written by an older schema version and before every write.
    """
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            cols.append(col if col.type == f.type else col.cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, type=f.type))
    return pa.Table.from_arrays(cols, schema=schema)


# --------------------------------------------------------------------------- catalog_summary

# One file, `tables/catalog_summary/part-0.parquet`, one row per catalog, rewritten whole by the
# (non-partitioned) `catalog_summary` asset; here `catalog` is an ordinary column.
STAT_DISTRIBUTION = pa.struct(
    [
        pa.field("stat", pa.string()),  # a float column of the depth_stats table
        pa.field("count", pa.int64()),  # images with a finite value
        *columns(pa.float64(), "mean", "min", "p10", "p50", "p90", "max"),
    ]
)

CATALOG_SUMMARY = pa.schema(
    [
        pa.field("catalog", pa.string(), nullable=False),
        pa.field("images", pa.int64()),  # accepted, de-duplicated source images
        pa.field("rejected", pa.int64()),
        pa.field("depth_maps", pa.int64()),  # images with a depth map (succeeded or cached)
        pa.field("depth_failed", pa.int64()),
        pa.field("depth_skipped_budget", pa.int64()),
        pa.field("depth_coverage", pa.float64()),  # depth_maps / images (null when no images)
        pa.field("total_cost_usd", pa.float64()),  # all-time, from lineage materializations
        pa.field("provider_calls", pa.int64()),  # all-time provider requests (not cache hits)
        pa.field("cost_per_image", pa.float64()),  # total_cost_usd / depth_maps (null when none)
        pa.field("runs", pa.int64()),
        pa.field("last_run_id", pa.string()),
        pa.field("last_run_at", TS),
        pa.field("depth_stats_images", pa.int64()),  # rows in depth_stats (null: table absent)
        pa.field("depth_stats", pa.list_(STAT_DISTRIBUTION)),
        pa.field("summarized_at", TS),
    ],
    metadata={"flux_depth.table": "catalog_summary", "flux_depth.schema_version": SCHEMA_VERSION},
)
