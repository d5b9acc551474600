"""Before/after pictures for docs/depth_quality.md: source | depth | normals per demo image.

    .venv/bin/python benchmarks/depth_figures.py --out docs/img --tag after astronaut chelsea

Run it once on the old commit (`--tag before`) and once on the new one (`--tag after`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from flux_depth_assets.depth.local_estimator import estimate_depth  # noqa: E402
from flux_depth_assets.depth.normals import normals_from_depth, quantize_normals  # noqa: E402


def panel(path: Path, height: int = 200) -> Image.Image:
    im = Image.open(path).convert("RGB")
    depth = estimate_depth(im)
    try:  # what the normal_maps asset does (older versions have no smoothing setting)
        from flux_depth_assets.config.models import NormalMapSettings

        smooth = float(getattr(NormalMapSettings(), "smooth", 0.0)) * max(depth.shape)
        normals = (
            normals_from_depth(depth, smooth_px=smooth) if smooth else normals_from_depth(depth)
        )
    except TypeError:
        normals = normals_from_depth(depth)
    normals = quantize_normals(normals)
    tiles = [
        im,
        Image.fromarray((depth * 255).astype(np.uint8)).convert("RGB"),
        Image.fromarray(normals, "RGB"),
    ]
    w = round(im.width * height / im.height)
    out = Image.new("RGB", (3 * w, height))
    for i, t in enumerate(tiles):
        out.paste(t.resize((w, height), Image.Resampling.BILINEAR), (i * w, 0))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="+", help="demo image stems, e.g. astronaut chelsea")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    ap.add_argument("--tag", default="after")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    demo = REPO / "examples" / "demo_catalog"
    for name in args.names:
        [path] = [p for p in demo.iterdir() if p.stem == name]
        target = args.out / f"{name}_{args.tag}.jpg"
        panel(path).save(target, quality=85)
        print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
