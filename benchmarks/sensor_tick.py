"""Benchmark: one upload-sensor tick over a 100,000-object catalog with 100 new objects.

Runs the real `<catalog>__upload_sensor` through `dagster.build_sensor_context` (config load,
listing, change detection, cursor JSON), over
  1. a local folder of N files (target: ≤ 2 s per tick), and
  2. an S3 prefix of N objects in moto's S3 server on loopback (figure reported, no target).
The first tick over a catalog that big records a baseline (first_tick_max_files); then 100 files
arrive and the measured tick requests one run. Prints a table and a JSON line.

    .venv/bin/python benchmarks/sensor_tick.py              # both, 100,000 objects
    .venv/bin/python benchmarks/sensor_tick.py --skip-s3 --objects 20000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import dagster as dg

from flux_depth_assets.config import load_project
from flux_depth_assets.defs.resources import CatalogsResource
from flux_depth_assets.defs.upload_sensors import build_upload_sensor
from flux_depth_assets.pipeline.upload_watch import list_fingerprints

NEW = 100
REPEAT = 3


def write_config(root: Path, source_yaml: str) -> Path:
    cfg = root / "cfg"
    (cfg / "catalogs").mkdir(parents=True, exist_ok=True)
    (cfg / "catalogs" / "bench.yml").write_text(
        textwrap.dedent(f"""
        catalogs:
          - name: bench
            source: {source_yaml}
            upload_sensor: {{settle_seconds: 30, first_tick_max_files: 1000}}
    """)
    )
    return cfg


def tick(sensor, cfg: Path, instance, cursor: str | None) -> tuple[dg.SensorResult, float]:
    ctx = dg.build_sensor_context(
        cursor=cursor,
        instance=instance,
        resources={"catalogs": CatalogsResource(config_dir=str(cfg))},
    )
    t0 = time.perf_counter()
    result = sensor(ctx)
    return result, time.perf_counter() - t0


def measure(cfg: Path, add_new) -> dict:
    catalog = load_project(cfg).catalog("bench")
    sensor = build_upload_sensor(catalog, dg.define_asset_job("catalog_job"))
    instance = dg.DagsterInstance.ephemeral()
    baseline, first_s = tick(sensor, cfg, instance, None)
    assert not baseline.run_requests, "first tick over a big catalog must only record a baseline"
    nothing, same_s = tick(sensor, cfg, instance, baseline.cursor)
    assert not nothing.run_requests
    add_new()
    t0 = time.perf_counter()
    listed = len(list_fingerprints(catalog.source))
    list_s = time.perf_counter() - t0
    times = []
    for _ in range(REPEAT):  # same previous cursor each time: the same decision, re-measured
        result, seconds = tick(sensor, cfg, instance, baseline.cursor)
        assert len(result.run_requests) == 1
        assert result.run_requests[0].tags["flux_depth/new_objects"] == str(NEW), (
            result.run_requests[0].tags
        )
        times.append(seconds)
    return {
        "objects": listed,
        "new": NEW,
        "first_tick_s": round(first_s, 3),
        "nothing_new_tick_s": round(same_s, 3),
        "listing_only_s": round(list_s, 3),
        "tick_with_new_s_median": round(statistics.median(times), 3),
        "tick_with_new_s_all": [round(t, 3) for t in times],
        "cursor_bytes": len(result.cursor),
        "run_key": result.run_requests[0].run_key,
    }


def bench_local(n: int, tmp: Path) -> dict:
    root = tmp / "local" / "photos"
    old = time.time() - 3600
    t0 = time.perf_counter()
    for i in range(n):
        d = root / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        p = d / f"img_{i:06d}.jpg"
        p.write_bytes(b"x")
        os.utime(p, (old, old))
    made = time.perf_counter() - t0

    def add_new():
        new_dir = root / "new"
        new_dir.mkdir()
        for i in range(NEW):
            p = new_dir / f"up_{i:03d}.jpg"
            p.write_bytes(b"y")
            os.utime(p, (old + 1800 + i, old + 1800 + i))  # uploads land one by one

    out = measure(write_config(tmp / "local", f"{{type: local_dir, path: {root}}}"), add_new)
    out["setup_s"] = round(made, 1)
    return out


def bench_s3(n: int, tmp: Path) -> dict:
    import boto3
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        os.environ.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL_S3=f"http://{host}:{port}",
        )
        boto3.client("s3").create_bucket(Bucket="bench-bucket")
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]  # bulk load without 100k PUTs
        t0 = time.perf_counter()
        for i in range(n):
            backend.put_object(
                "bench-bucket",
                f"drop/d{i // 1000:03d}/img_{i:06d}.jpg",
                b"x",
                disable_notification=True,
            )
        made = time.perf_counter() - t0
        time.sleep(1.1)  # LastModified has 1 s resolution: new objects land after the baseline

        def add_new():
            for i in range(NEW):
                backend.put_object(
                    "bench-bucket", f"drop/new/up_{i:03d}.jpg", b"y", disable_notification=True
                )

        # settle_seconds would hold objects this fresh; the S3 run measures listing + diff.
        cfg = write_config(tmp / "s3", "{type: s3_prefix, bucket: bench-bucket, prefix: drop}")
        text = (
            (cfg / "catalogs" / "bench.yml")
            .read_text()
            .replace("settle_seconds: 30", "settle_seconds: 0")
        )
        (cfg / "catalogs" / "bench.yml").write_text(text)
        out = measure(cfg, add_new)
        out["setup_s"] = round(made, 1)
        return out
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="sensor-bench-") as tmp:
        if not args.skip_local:
            results["local_dir"] = bench_local(args.objects, Path(tmp))
        if not args.skip_s3:
            results["s3_prefix_moto"] = bench_s3(args.objects, Path(tmp))
    print(
        f"{'source':<16}{'objects':>9}{'tick (new)':>12}{'listing':>10}{'nothing new':>13}"
        f"{'cursor':>9}"
    )
    for name, r in results.items():
        print(
            f"{name:<16}{r['objects']:>9,}{r['tick_with_new_s_median']:>11.2f}s"
            f"{r['listing_only_s']:>9.2f}s{r['nothing_new_tick_s']:>12.2f}s{r['cursor_bytes']:>8} B"
        )
    print(json.dumps(results))
    local = results.get("local_dir")
    if local and local["objects"] >= 100_000 and local["tick_with_new_s_median"] > 2.0:
        print("FAIL: local tick over 100k files took more than 2 s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
