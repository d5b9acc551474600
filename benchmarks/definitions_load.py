"""Time the code location's load: `build_definitions` + `Definitions.validate_loadable`.

What `dagster dev` and every run worker pay at start. The catalogs are the four of
tests/test_schedules.py (two schedules, two upload sensors, one S3 source); loading must not
call S3, so the endpoint points at a closed port. (A unit test used to assert "under 5 s" here;
timings live in benchmarks, not in tests.)

    .venv/bin/python benchmarks/definitions_load.py [--repeat 5] [--limit 5.0]

Exits 1 when the median is over `--limit` seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg

from flux_depth_assets.defs.build import build_definitions
from flux_depth_assets.defs.resources import CatalogsResource

CATALOGS = """
catalogs:
  - name: nightly
    source: {type: local_dir, path: a}
    schedule: "0 3 * * *"
    schedule_timezone: Europe/Paris
  - name: both
    source: {type: s3_prefix, bucket: prod-images, prefix: both}
    schedule: "@hourly"
    upload_sensor: {settle_seconds: 60, minimum_interval_seconds: 120}
  - name: watched
    source: {type: local_dir, path: b}
    upload_sensor: {enabled: false}
  - name: plain
    source: {type: local_dir, path: c}
"""


def load_once(config_dir: Path) -> float:
    started = time.perf_counter()
    defs = build_definitions({"catalogs": CatalogsResource(config_dir=str(config_dir))})
    dg.Definitions.validate_loadable(defs)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--limit", type=float, default=5.0, help="seconds (median)")
    args = parser.parse_args()
    os.environ["AWS_ENDPOINT_URL_S3"] = "http://127.0.0.1:9"  # loading must not call S3
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "cfg"
        (cfg / "catalogs").mkdir(parents=True)
        (cfg / "catalogs" / "c.yml").write_text(textwrap.dedent(CATALOGS))
        times = [load_once(cfg) for _ in range(args.repeat)]
    median = statistics.median(times)
    rows = [
        (
            "machine",
            f"{platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()})",
        ),
        ("command", " ".join([Path(sys.executable).name, *sys.argv])),
        ("first load (imports warm after it)", f"{times[0]:.3f} s"),
        (f"median of {args.repeat}", f"{median:.3f} s (limit {args.limit:g} s)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0 if median <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
