"""Arrow schemas of the per-catalog snapshot tables, declared once and written with. Column groups
that several tables share (`PROVIDER_ROW`, `PROVIDER`, `CALL`, `DERIVED_ROW`, `STAMP`) are declared
once too.

The `catalog` column is not stored in the files: it comes from the hive partition directory
(`catalog=<name>`), so pandas, `pyarrow.dataset` and DuckDB all see it as a column.
"""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
STR = pa.string()
F64 = pa.float64()


def columns(kind: pa.DataType, *names: str) -> list[pa.Field]:
    """Consecutive columns of one type (the column groups below are shared between tables)."""
    return [pa.field(name, kind) for name in names]


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

#: the image and the outcome of its provider call: every `depth_maps`/`depth_renders` row starts so
#: (status: succeeded | cached | failed | skipped_budget)
PROVIDER_ROW = columns(STR, "image_id", "source_sha256", "status", "error")
#: what identifies the call (its cache key, from the provider, model and params)
PROVIDER = columns(STR, "provider", "model", "model_version", "params_hash", "cache_key")
#: what the call cost
CALL = [
    pa.field("prediction_id", STR),
    *columns(pa.int32(), "attempts", "http_status"),
    pa.field("cost_usd", F64),
]
#: which run wrote the row, and when: every table but source_images ends so
STAMP = [pa.field("run_id", STR), pa.field("materialized_at", TS)]

DEPTH_MAPS = pa.schema(
    [
        *PROVIDER_ROW,
        pa.field("depth_path", STR),  # 16-bit PNG, larger = nearer
        pa.field("npy_path", STR),  # float32 .npy (optional)
        pa.field("output_sha256", STR),
        *PROVIDER,
        pa.field("metric", pa.bool_()),
        *columns(F64, "depth_min", "depth_max"),  # before normalisation
        *columns(pa.int32(), "width", "height"),
        pa.field("seconds", F64),
        *CALL,
        *STAMP,
    ]
)


def table_from_rows(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly `schema`'s columns; missing keys become nulls."""
    return pa.Table.from_pylist(
        [{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema
    )


DEPTH_RENDERS = pa.schema(
    [
        *PROVIDER_ROW,
        pa.field("render_path", STR),  # as returned by the host (PNG or JPG)
        *columns(STR, "format", "output_sha256", "prompt"),
        pa.field("seed", pa.int64()),
        *PROVIDER,
        *CALL,
        pa.field("seconds", F64),
        *STAMP,
    ]
)

# --------------------------------------------------------------------------- derived (issue 5)
# status: succeeded | cached | failed | skipped_no_depth. `depth_sha256` is the sha256 of the
# depth map PNG the row was made from and `params_hash` of the settings + algorithm version:
# an image is recomputed only when either changes (or its outputs are gone).

#: an image and the depth map its outputs were made from: every derived row starts so
DERIVED_ROW = columns(STR, "image_id", "status", "error", "depth_sha256")

NORMAL_MAPS = pa.schema(
    [
        *DERIVED_ROW,
        pa.field("params_hash", STR),
        pa.field("normal_path", STR),  # RGB PNG, n = rgb / max * 2 - 1
        pa.field("output_sha256", STR),
        pa.field("convention", STR),  # opengl (+Y up) | directx (+Y down)
        pa.field("bit_depth", pa.int8()),  # 8 | 16
        pa.field("strength", F64),
        *columns(pa.int32(), "width", "height"),
        pa.field("max_unit_error", F64),  # max | |decoded n| - 1 |
        *columns(F64, "mean_tilt_deg", "seconds"),
        *STAMP,
    ]
)

PARALLAX_SPRITES = pa.schema(
    [
        *DERIVED_ROW,
        *columns(STR, "source_sha256", "params_hash"),
        pa.field("sprite_dir", STR),  # catalogs/<name>/parallax_sprites/<image_id>/
        pa.field("manifest_path", STR),  # written last: its presence means complete
        pa.field("preview_path", STR),
        *columns(pa.int32(), "layers", "nonempty_layers"),
        pa.field("cuts", pa.list_(F64)),  # nearness thresholds, far → near
        *columns(pa.int32(), "width", "height"),
        pa.field("bytes", pa.int64()),  # all files of the folder
        pa.field("seconds", F64),
        *STAMP,
    ]
)

DEPTH_STATS = pa.schema(
    [
        *DERIVED_ROW,
        pa.field("params_hash", STR),
        *columns(pa.int32(), "width", "height"),
        pa.field("valid_fraction", F64),
        # nearness percentiles, stored [0, 1] scale
        *columns(F64, "p1", "p5", "p25", "p50", "p75", "p95", "p99"),
        *columns(F64, "nearness_mean", "nearness_std"),
        pa.field("near_far_ratio", F64),  # p99 / p1 in the provider's scale; null if p1 <= 0
        pa.field("edge_density", F64),  # fraction of valid pixels on a depth edge
        pa.field("mean_tilt_deg", F64),  # with the catalog's normal_maps strength
        *STAMP,
    ]
)
