"""Append rows to the lineage tables: one file per run, asset, table and partition, written atomically.

A file is named `part-<run_id>-<asset>.parquet` inside `catalog=<catalog>/date=<YYYY-MM-DD>/`.
Writing the same (run, asset, partition) again replaces that file, so a retried step never
duplicates rows. Nothing here imports Dagster: the CLI, benchmarks and notebooks use it as is.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from flux_depth_assets.lineage.schemas import CALL_STATUSES, ROOT, TABLES, conform
from flux_depth_assets.paths import safe_segment
from flux_depth_assets.redaction import mask
from flux_depth_assets.storage.store import Storage

MAX_ERROR_CHARS = 1000


def utc_day(ts: datetime) -> date:
    if ts.tzinfo is None:
        raise ValueError("lineage timestamps must be timezone-aware (UTC)")
    return ts.astimezone(UTC).date()


def partition_rel(table: str, catalog: str, day: date) -> str:
    """`tables/lineage/<table>/catalog=<catalog>/date=<day>`, refusing unsafe names."""
    if table not in TABLES:
        raise KeyError(f"unknown lineage table {table!r}; known: {', '.join(TABLES)}")
    return f"{ROOT}/{table}/catalog={safe_segment(catalog)}/date={day.isoformat()}"


def file_name(run_id: str, asset: str) -> str:
    return safe_segment(f"part-{run_id}-{asset}.parquet")


def rows_to_table(rows: Iterable[Mapping[str, Any]], table: str) -> pa.Table:
    """Rows → a table with exactly the declared schema; refuses nulls in required columns."""
    schema = TABLES[table]
    rows = list(rows)
    out = pa.Table.from_pylist(
        [{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema
    )
    for f in schema:
        if not f.nullable and out.column(f.name).null_count:
            raise ValueError(
                f"lineage table {table!r}: column {f.name!r} is required but "
                f"{out.column(f.name).null_count} row(s) have no value"
            )
    if table == "provider_calls":
        bad = sorted({r.get("status") for r in rows} - set(CALL_STATUSES), key=str)
        if bad:
            raise ValueError(
                f"provider_calls: unknown status {bad}; allowed: {', '.join(CALL_STATUSES)}"
            )
    return out


def write_rows(
    store: Storage,
    table: str,
    *,
    catalog: str,
    day: date,
    run_id: str,
    asset: str,
    rows: Iterable[Mapping[str, Any]],
) -> str | None:
    """Write one run's rows of one asset into one partition file; returns its relative path.

    Nothing is written for no rows (an empty file would only slow readers down).
    """
    data = rows_to_table(rows, table)
    if data.num_rows == 0:
        return None
    rel = f"{partition_rel(table, catalog, day)}/{file_name(run_id, asset)}"
    return store.write_table(rel, conform(data, TABLES[table]))


# --------------------------------------------------------------------------- rows


_SECRET_PATTERNS = [
    # key=value / key: value forms of anything that looks like a credential
    re.compile(
        r"(?i)\b((?:x-)?api[_-]?key|apikey|authorization|auth|token|access[_-]?token|secret|"
        r"password|passwd|signature|x-amz-signature|x-amz-credential)\b(\"?\s*[:=]\s*\"?)"
        r"(?:bearer\s+|basic\s+)?[^\s\"',;&}]+"
    ),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
]


def redact(text: str | None, secrets: Iterable[str | None] = ()) -> str | None:
    """`text` with known secret values and credential-looking pairs masked, cut to 1000 chars."""
    if text is None:
        return None
    out = mask(str(text), [s for s in secrets if s and len(s) >= 4])
    out = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}***", out)
    out = _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)} ***", out)
    return out if len(out) <= MAX_ERROR_CHARS else out[: MAX_ERROR_CHARS - 1] + "…"


def calls_from_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    run_id: str,
    asset: str,
    default_time: datetime,
    secrets: Iterable[str | None] = (),
) -> list[dict]:
    """`provider_calls` rows from `run_provider_asset` rows (their table rows plus timings;
    the output path is `output_path`, `depth_path` or `render_path`).

    One row per image: cache hits (`cached=true`, cost 0) and budget skips included. A row's
    `started_at`/`finished_at` fall back to `default_time` when the run did not time the call.
    """
    secrets = list(secrets)
    out = []
    for r in rows:
        status = r["status"]
        started = r.get("started_at") or default_time
        finished = r.get("finished_at") or started
        out.append(
            {
                "run_id": run_id,
                "asset": asset,
                "image_id": r["image_id"],
                "source_sha256": r.get("source_sha256"),
                "output_sha256": r.get("output_sha256"),
                "output_path": r.get("output_path") or r.get("depth_path") or r.get("render_path"),
                "provider": r.get("provider"),
                "model": r.get("model"),
                "model_version": r.get("model_version"),
                "params_hash": r.get("params_hash"),
                "cache_key": r.get("cache_key"),
                "prediction_id": r.get("prediction_id"),
                "status": status,
                "cached": status == "cached",
                "attempts": int(r.get("attempts") or 0),
                "http_status": r.get("http_status"),
                "latency_s": float(r.get("seconds") or 0.0),
                "cost_usd": 0.0
                if status in ("cached", "skipped_budget")
                else float(r.get("cost_usd") or 0.0),
                "started_at": started,
                "finished_at": finished,
                "error": redact(r.get("error"), secrets),
                "resumed": bool(r.get("resumed")),
                "uncertain_attempts": int(r.get("uncertain_attempts") or 0),
                "uncertain_cost_usd": float(r.get("uncertain_cost_usd") or 0.0),
                "host": None if status in ("cached", "skipped_budget") else r.get("host"),
            }
        )
    return out


def config_hash(*parts: Any) -> str:
    """sha256 (16 hex) of validated config objects (pydantic models or plain data), order kept."""

    def plain(p: Any) -> Any:
        return p.model_dump(mode="json") if hasattr(p, "model_dump") else p

    blob = json.dumps([plain(p) for p in parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def materialization_row(
    *,
    run_id: str,
    asset: str,
    counts: Mapping[str, int],
    cost_usd: float,
    seconds: float,
    started_at: datetime,
    finished_at: datetime,
    provider_calls: int = 0,
    status: str = "succeeded",
    code_version: str | None = None,
    config_hash: str | None = None,
) -> dict:
    """One `materializations` row. `counts` keys: images, new, cached, failed, rejected,
    skipped_budget (missing keys are null, i.e. "not applicable to this asset")."""

    def c(key: str) -> int | None:
        v = counts.get(key)
        return None if v is None else int(v)

    return {
        "run_id": run_id,
        "asset": asset,
        "status": status,
        "code_version": code_version,
        "config_hash": config_hash,
        "images_in": c("images"),
        "images_new": c("new"),
        "images_cached": c("cached"),
        "images_failed": c("failed"),
        "images_rejected": c("rejected"),
        "images_skipped_budget": c("skipped_budget"),
        "provider_calls": int(provider_calls),
        "cost_usd": float(cost_usd),
        "seconds": float(seconds),
        "started_at": started_at,
        "finished_at": finished_at,
    }
