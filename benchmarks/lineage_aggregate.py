"""Aggregate 1,000,000 `provider_calls` rows by catalog and UTC day, with pyarrow and DuckDB.

Generates the rows (declared schema, hive layout, one file per run per partition, like the
pipeline writes them) under a temporary storage root, then times, reading from disk each time:

- pyarrow: `flux_depth_assets.lineage.queries.calls_by_catalog_day(dataset)`
- DuckDB:  `SELECT catalog, date, count(*), sum(cost_usd), ... GROUP BY ALL` over the same files

before and after `compact` (which merges each partition's files into one).

    .venv/bin/python benchmarks/lineage_aggregate.py [--rows 1000000] [--limit 1.0]

Exits 1 when the faster engine's median is over `--limit` seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flux_depth_assets.lineage import queries
from flux_depth_assets.lineage.compact import compact
from flux_depth_assets.lineage.schemas import PROVIDER_CALLS
from flux_depth_assets.lineage.writer import file_name, partition_rel
from flux_depth_assets.storage.store import Storage

CATALOGS = 10
DAYS = 30
RUNS_PER_PARTITION = 2
STATUSES = np.array(["succeeded", "cached", "failed", "skipped_budget"])
FIRST_DAY = date(2026, 1, 1)


def _hex_pool(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    raw = rng.integers(0, 2**63, size=(n, (width + 15) // 16), dtype=np.int64)
    return np.array(["".join(f"{v:016x}" for v in row)[:width] for row in raw])


def generate(store: Storage, rows: int, seed: int = 0) -> int:
    """Write `rows` provider_calls rows; returns the number of files."""
    rng = np.random.default_rng(seed)
    shas = _hex_pool(rng, 20_000, 64)  # source images re-used across runs, as in real catalogs
    files = CATALOGS * DAYS * RUNS_PER_PARTITION
    per_file = np.full(files, rows // files)
    per_file[: rows - per_file.sum()] += 1
    n = 0
    for c in range(CATALOGS):
        for d in range(DAYS):
            day = FIRST_DAY + timedelta(days=d)
            for r in range(RUNS_PER_PARTITION):
                k = int(per_file[n])
                n += 1
                run_id = f"run-{c:02d}-{d:02d}-{r}"
                status = STATUSES[rng.choice(4, size=k, p=[0.55, 0.40, 0.03, 0.02])]
                paid = (status == "succeeded") | (status == "failed")
                src = shas[rng.integers(0, len(shas), size=k)]
                start = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=r * 6)
                started = pa.array(
                    np.datetime64(start.replace(tzinfo=None), "us")
                    + rng.integers(0, 3_600_000_000, size=k).astype("timedelta64[us]")
                )
                latency = np.where(paid, rng.uniform(15, 19, size=k), 0.01)
                table = pa.table(
                    {
                        "run_id": pa.array([run_id] * k),
                        "asset": pa.array(["depth_maps"] * k),
                        "image_id": pa.array([s[:16] for s in src]),
                        "source_sha256": pa.array(src),
                        "output_sha256": pa.array(src),  # stand-in hash of the output
                        "output_path": pa.array(
                            [f"catalogs/cat{c:02d}/depth_maps/{s[:16]}.png" for s in src]
                        ),
                        "provider": pa.array(["eachlabs"] * k),
                        "model": pa.array(["flux-depth-pro"] * k),
                        "model_version": pa.array(["0.0.1"] * k),
                        "params_hash": pa.array(["0123456789abcdef"] * k),
                        "cache_key": pa.array(src),
                        "prediction_id": pa.array([f"pred-{run_id}-{i}" for i in range(k)]),
                        "status": pa.array(status),
                        "cached": pa.array(status == "cached"),
                        "attempts": pa.array(np.where(paid, 1, 0).astype(np.int32)),
                        "http_status": pa.array(
                            np.where(status == "failed", 500, 200).astype(np.int32)
                        ),
                        "latency_s": pa.array(latency),
                        "cost_usd": pa.array(np.where(paid, 0.05, 0.0)),
                        "started_at": started.cast(pa.timestamp("us", tz="UTC")),
                        "finished_at": pc.add(
                            started, pa.array((latency * 1e6).astype("timedelta64[us]"))
                        ).cast(pa.timestamp("us", tz="UTC")),
                        "error": pa.nulls(k, pa.string()),
                    }
                ).cast(PROVIDER_CALLS)
                rel = f"{partition_rel('provider_calls', f'cat{c:02d}', day)}/{file_name(run_id, 'depth_maps')}"
                store.write_table(rel, table)
    return files


def time_it(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--limit", type=float, default=1.0, help="seconds allowed for the faster engine"
    )
    args = ap.parse_args(argv)
    import duckdb

    with tempfile.TemporaryDirectory(prefix="lineage-bench-") as tmp:
        store = Storage(tmp)
        t0 = time.perf_counter()
        files = generate(store, args.rows)
        print(
            f"generated {args.rows:,} provider_calls rows in {files} files "
            f"({CATALOGS} catalogs x {DAYS} days x {RUNS_PER_PARTITION} runs) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        base = Path(tmp) / "tables/lineage/provider_calls"
        con = duckdb.connect()
        sql = (
            f"SELECT catalog, date, count(*) AS calls, "
            f"count(*) FILTER (WHERE NOT cached AND status <> 'skipped_budget') AS paid_calls, "
            f"count(*) FILTER (WHERE cached) AS cached, sum(cost_usd) AS cost_usd "
            f"FROM read_parquet('{base}/*/*/*.parquet', hive_partitioning=true) "
            f"GROUP BY ALL ORDER BY ALL"
        )

        def arrow() -> pa.Table:
            return queries.calls_by_catalog_day(queries.dataset(store, "provider_calls"))

        def duck():
            return con.sql(sql).fetchall()

        results = {}
        for label in ("before compaction", "after compaction"):
            if label == "after compaction":
                t0 = time.perf_counter()
                compact(store, include_today=True)
                print(
                    f"compact: {files} files -> {CATALOGS * DAYS} in {time.perf_counter() - t0:.1f} s"
                )
            ta, out_a = time_it(arrow, args.repeat)
            td, out_d = time_it(duck, args.repeat)
            assert out_a.num_rows == CATALOGS * DAYS == len(out_d)
            assert sum(out_a["calls"].to_pylist()) == args.rows == sum(r[2] for r in out_d)
            assert abs(sum(out_a["cost_usd"].to_pylist()) - sum(r[5] for r in out_d)) < 1e-6
            results[label] = (ta, td)
            print(
                f"{label:18s} pyarrow.dataset {ta * 1000:7.1f} ms   DuckDB {td * 1000:7.1f} ms "
                f"(median of {args.repeat}; {CATALOGS * DAYS} groups, {args.rows:,} rows)"
            )
    best = min(min(v) for v in results.values())
    worst_best = max(min(v) for v in results.values())
    print(
        f"result: aggregating {args.rows:,} rows by catalog and day takes at most "
        f"{worst_best * 1000:.0f} ms with the faster engine (best {best * 1000:.0f} ms); "
        f"limit {args.limit * 1000:.0f} ms"
    )
    return 0 if worst_best <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
