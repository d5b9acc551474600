"""Where a run's time goes: cProfile of every asset over N ~1 MP photos, in one process.

Runs the same catalog as `pipeline_throughput.py` through the real runner with `workers=1` (so
all the work is in this process and the profiler sees it), one asset at a time, and prints the
top functions by own time for each asset. `--out DIR` also writes `<asset>.prof` files for
snakeviz / `python -m pstats`. The output is not committed.

    .venv/bin/python benchmarks/profile_run.py --n 20
    .venv/bin/python benchmarks/profile_run.py --n 20 --assets parallax_sprites --top 40
    .venv/bin/python benchmarks/profile_run.py --kernels --n 5   # CPU ms per stage, no Dagster
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline_throughput import ASSETS, ensure_photos, write_config  # noqa: E402


def kernel_costs(n: int) -> None:
    """Median CPU ms per image of each stage at ~1 MP, called directly (no Dagster, no I/O)."""
    import statistics
    import time

    import numpy as np

    from benchmarks.pipeline_throughput import _demo_photos, make_photo
    from flux_depth_assets.config.models import NormalMapSettings, SpriteSettings
    from flux_depth_assets.depth.encoding import decode_png16, encode_png, quantize
    from flux_depth_assets.depth.local_estimator import estimate_depth_and_faces
    from flux_depth_assets.depth.normals import normals_from_depth, quantize_normals
    from flux_depth_assets.depth.sprites import build_sprites
    from flux_depth_assets.depth.stats import depth_statistics
    from flux_depth_assets.imaging.validation import validate_image_bytes
    from flux_depth_assets.thumbs import sway_thumb

    stages: dict[str, list[float]] = {}

    def timed(name: str, fn, *args, **kw):  # type: ignore[no-untyped-def]
        t = time.process_time()
        out = fn(*args, **kw)
        stages.setdefault(name, []).append(1000 * (time.process_time() - t))
        return out

    bases = _demo_photos()
    for i in range(n):
        buf = io.BytesIO()
        make_photo(bases, i).save(buf, format="JPEG", quality=90)
        valid = timed(
            "source: validate (decode, sha256, EXIF)", validate_image_bytes, buf.getvalue()
        )
        rgb = np.asarray(valid.image)
        timed("source: encode normalised PNG", encode_png, rgb)
        near, faces = timed("depth: local estimator", estimate_depth_and_faces, valid.image)
        q, _, _ = timed("depth: quantize", quantize, near)
        png = timed("depth: encode 16-bit PNG", encode_png, q)
        dec = timed("derived: decode depth PNG", decode_png16, png)
        nrm = timed(  # with the default settings' smoothing, as `normal_maps` runs it
            "normals: normals_from_depth",
            normals_from_depth,
            dec,
            smooth_px=NormalMapSettings().smooth * max(dec.shape),
        )
        qn = timed("normals: quantize", quantize_normals, nrm)
        timed("normals: encode PNG", encode_png, qn)
        timed("stats: depth_statistics", depth_statistics, dec)
        ss = timed(  # with the estimator's faces, as the pipeline does for `local` maps
            "sprites: build_sprites (total)", build_sprites, rgb, dec, SpriteSettings(), faces=faces
        )
        timed("sprites: gallery thumbnail of the preview", sway_thumb, ss.preview_frames, 80)
        for stage, sec in ss.seconds.items():
            stages.setdefault(f"sprites:   {stage}", []).append(1000 * sec)
    print(f"CPU ms per ~1 MP image, median of {n} (process_time, one process):")
    for name, values in stages.items():
        print(f"  {name:<44}{statistics.median(values):8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--assets", default=",".join(ASSETS))
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    ap.add_argument("--out", help="write <asset>.prof files here")
    ap.add_argument("--kernels", action="store_true", help="CPU per stage, called directly")
    args = ap.parse_args()
    if args.kernels:
        kernel_costs(args.n)
        return

    from flux_depth_assets.defs.resources import ComputeResource, StorageResource
    from flux_depth_assets.defs.runner import materialize_catalog

    work = Path(tempfile.mkdtemp(prefix="flux_prof_"))
    try:
        photos = work / "photos"
        ensure_photos(photos, args.n)
        write_config(work / "cfg", photos)
        resources = {
            "storage": StorageResource(root=str(work / "home")),
            "compute": ComputeResource(workers=1),
        }
        wanted = args.assets.split(",")
        for asset in ASSETS:  # upstream assets run unprofiled when only some are asked for
            prof = cProfile.Profile() if asset in wanted else None
            if prof:
                prof.enable()
            out = materialize_catalog(
                "bench",
                assets=[asset],
                config_dir=work / "cfg",
                resources=resources,
                log_level="WARNING",
            )
            if prof:
                prof.disable()
            if not out.success:
                raise SystemExit(f"{asset} failed: {out.error}")
            if prof is None:
                continue
            buf = io.StringIO()
            stats = pstats.Stats(prof, stream=buf)
            total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
            print(
                f"\n=== {asset}: {total:.2f} s profiled, {1000 * total / args.n:.0f} ms/image ==="
            )
            stats.sort_stats(args.sort).print_stats(args.top)
            print("\n".join(buf.getvalue().splitlines()[6:]))
            if args.out:
                Path(args.out).mkdir(parents=True, exist_ok=True)
                prof.dump_stats(str(Path(args.out) / f"{asset}.prof"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
