"""Arrow schemas of the per-catalog snapshot tables, declared once and written with.

The `catalog` column is not stored in the files: it comes from the hive partition directory
(`catalog=<name>`), so pandas, `pyarrow.dataset` and DuckDB all see it as a column.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

SOURCE_IMAGES = pa.schema(
    [
        pa.field("image_id", pa.string()),  # first 16 hex of sha256; null when unreadable
        pa.field("status", pa.string()),  # accepted | rejected | duplicate
        pa.field("reason", pa.string()),  # why rejected (null when accepted)
        pa.field("source_uri", pa.string()),
        pa.field("format", pa.string()),  # JPEG | PNG | WEBP (from magic bytes)
        pa.field("mode", pa.string()),  # original Pillow mode (e.g. CMYK, P, I;16)
        pa.field("width", pa.int32()),  # after EXIF orientation
        pa.field("height", pa.int32()),
        pa.field("bytes", pa.int64()),
        pa.field("sha256", pa.string()),
        pa.field("exif_orientation", pa.int8()),  # 1..8 as found; 1 when absent
        pa.field("has_alpha", pa.bool_()),
        pa.field("normalized_path", pa.string()),  # RGB PNG the providers read
        pa.field("mtime", TS),  # file mtime, S3 LastModified, or HTTP Last-Modified
        pa.field("scanned_at", TS),
        # Added later: new columns go last, so files written before them still read (as nulls).
        pa.field("external_id", pa.string()),  # url_manifest's id column; null for other sources
        pa.field("etag", pa.string()),  # S3 ETag, or the HTTP ETag verbatim (sent back
        # in If-None-Match); null when none was given
        # the file's own size after EXIF orientation; `width`/`height` are the normalised copy's,
        # smaller only when the file is over the working bound (imaging.validation.WORKING_MAX_PIXELS)
        pa.field("original_width", pa.int32()),
        pa.field("original_height", pa.int32()),
    ]
)

DEPTH_MAPS = pa.schema(
    [
        pa.field("image_id", pa.string()),
        pa.field("source_sha256", pa.string()),
        pa.field("status", pa.string()),  # succeeded | cached | failed | skipped_budget
        pa.field("error", pa.string()),
        pa.field("depth_path", pa.string()),  # 16-bit PNG, larger = nearer
        pa.field("npy_path", pa.string()),  # float32 .npy (optional)
        pa.field("output_sha256", pa.string()),
        pa.field("provider", pa.string()),
        pa.field("model", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("params_hash", pa.string()),
        pa.field("cache_key", pa.string()),
        pa.field("metric", pa.bool_()),
        pa.field("depth_min", pa.float64()),  # before normalisation
        pa.field("depth_max", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("seconds", pa.float64()),
        pa.field("prediction_id", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("http_status", pa.int32()),
        pa.field("cost_usd", pa.float64()),
        pa.field("run_id", pa.string()),
        pa.field("materialized_at", TS),
    ]
)


def table_from_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly `schema`'s columns; missing keys become nulls."""
    return pa.Table.from_pylist(
        [{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema
    )


DEPTH_RENDERS = pa.schema(
    [
        pa.field("image_id", pa.string()),
        pa.field("source_sha256", pa.string()),
        pa.field("status", pa.string()),  # succeeded | cached | failed | skipped_budget
        pa.field("error", pa.string()),
        pa.field("render_path", pa.string()),  # as returned by the host (PNG or JPG)
        pa.field("format", pa.string()),
        pa.field("output_sha256", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("seed", pa.int64()),
        pa.field("provider", pa.string()),
        pa.field("model", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("params_hash", pa.string()),
        pa.field("cache_key", pa.string()),
        pa.field("prediction_id", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("http_status", pa.int32()),
        pa.field("cost_usd", pa.float64()),
        pa.field("seconds", pa.float64()),
        pa.field("run_id", pa.string()),
        pa.field("materialized_at", TS),
    ]
)

# --------------------------------------------------------------------------- derived (issue 5)
# status: succeeded | cached | failed | skipped_no_depth. `depth_sha256` is the sha256 of the
# depth map PNG the row was made from and `params_hash` of the settings + algorithm version:
# an image is recomputed only when either changes (or its outputs are gone).

NORMAL_MAPS = pa.schema(
    [
        pa.field("image_id", pa.string()),
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("depth_sha256", pa.string()),
        pa.field("params_hash", pa.string()),
        pa.field("normal_path", pa.string()),  # RGB PNG, n = rgb / max * 2 - 1
        pa.field("output_sha256", pa.string()),
        pa.field("convention", pa.string()),  # opengl (+Y up) | directx (+Y down)
        pa.field("bit_depth", pa.int8()),  # 8 | 16
        pa.field("strength", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("max_unit_error", pa.float64()),  # max | |decoded n| - 1 |
        pa.field("mean_tilt_deg", pa.float64()),
        pa.field("seconds", pa.float64()),
        pa.field("run_id", pa.string()),
        pa.field("materialized_at", TS),
    ]
)

PARALLAX_SPRITES = pa.schema(
    [
        pa.field("image_id", pa.string()),
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("depth_sha256", pa.string()),
        pa.field("source_sha256", pa.string()),
        pa.field("params_hash", pa.string()),
        pa.field("sprite_dir", pa.string()),  # catalogs/<name>/parallax_sprites/<image_id>/
        pa.field("manifest_path", pa.string()),  # written last: its presence means complete
        pa.field("preview_path", pa.string()),
        pa.field("layers", pa.int32()),
        pa.field("nonempty_layers", pa.int32()),
        pa.field("cuts", pa.list_(pa.float64())),  # nearness thresholds, far → near
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("bytes", pa.int64()),  # all files of the folder
        pa.field("seconds", pa.float64()),
        pa.field("run_id", pa.string()),
        pa.field("materialized_at", TS),
    ]
)

DEPTH_STATS = pa.schema(
    [
        pa.field("image_id", pa.string()),
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("depth_sha256", pa.string()),
        pa.field("params_hash", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("valid_fraction", pa.float64()),
        pa.field("p1", pa.float64()),  # nearness percentiles, stored [0, 1] scale
        pa.field("p5", pa.float64()),
        pa.field("p25", pa.float64()),
        pa.field("p50", pa.float64()),
        pa.field("p75", pa.float64()),
        pa.field("p95", pa.float64()),
        pa.field("p99", pa.float64()),
        pa.field("nearness_mean", pa.float64()),
        pa.field("nearness_std", pa.float64()),
        pa.field(
            "near_far_ratio", pa.float64()
        ),  # p99 / p1 in the provider's scale; null if p1 <= 0
        pa.field("edge_density", pa.float64()),  # fraction of valid pixels on a depth edge
        pa.field("mean_tilt_deg", pa.float64()),  # with the catalog's normal_maps strength
        pa.field("run_id", pa.string()),
        pa.field("materialized_at", TS),
    ]
)
