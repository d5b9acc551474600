"""Derived assets on ~4-megapixel inputs, one CPU core: normals (ours vs `depth2normal`) and sprites.

    .venv/bin/python benchmarks/derived_speed.py            # the full run (~1 min)
    .venv/bin/python benchmarks/derived_speed.py --quick    # smaller inputs, fewer repeats
    .venv/bin/python benchmarks/derived_speed.py --budget   # depth/normals/sprites at 1 MP

Prints a Markdown report (the "Derived assets" section of benchmarks/README.md is made from it).

Normals are timed as computation only (float32 unit vectors from the nearness map); PNG encoding
is timed on its own. The peer is `depth2normal` from PyPI (benchmark-only dependency, never
imported by the package or the tests): `pip install depth2normal`. Without it that part is
skipped. Its strength is set so both tools describe the same slope (ours: Δnearness per image
width; depth2normal: Δ(nearness·255) per pixel, so s_peer = s_ours · W / 255), and our normals are
compared in its +Y-down (DirectX) convention.

Inputs: an analytic sphere-on-a-plane (true normals known), the Middlebury-style disparity maps
in ../shared/data/gt when present (real depth discontinuities), and the demo photo's depth from
the local estimator, all resized to about 4 MP.
"""

from __future__ import annotations

import os

# one core: pin the process and keep every library single-threaded
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flux_depth_assets.config.models import SpriteSettings  # noqa: E402
from flux_depth_assets.depth.local_estimator import estimate_depth  # noqa: E402
from flux_depth_assets.depth.normals import (  # noqa: E402
    angular_error_deg,
    encode_normals_png,
    normals_from_depth,
)
from flux_depth_assets.depth.sprites import build_sprites, psnr, recompose  # noqa: E402
from flux_depth_assets.depth.stats import edge_mask  # noqa: E402

SHARED = Path(os.environ.get("FLUX_DEPTH_SHARED_DATA", REPO.parent / "shared" / "data"))

try:
    import depth2normal  # benchmark-only peer
except ImportError:  # pragma: no cover - optional
    depth2normal = None


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median CPU seconds of this (single-threaded, pinned) process over `repeats` runs after one
    warm-up, and the last result. CPU time, not wall time: the machine is shared, and a busy
    neighbour would otherwise be counted as our cost."""
    out = fn()
    times = []
    for _ in range(repeats):
        t = time.process_time()
        out = fn()
        times.append(time.process_time() - t)
    return statistics.median(times), out


def sphere_scene(w: int, h: int, radius: float = 0.3):
    """A hemisphere raised 0.2 above a plane (a real depth step at its rim) and its true normals
    in the +Y-down convention, plus each pixel's distance to the silhouette in pixels."""
    u = (np.arange(w) + 0.5) / w
    v = (np.arange(h) + 0.5) / w
    uu, vv = np.meshgrid(u, v)
    cu, cv = 0.5, h / w / 2
    r2 = (uu - cu) ** 2 + (vv - cv) ** 2
    inside = r2 < radius**2
    z = np.sqrt(np.maximum(radius**2 - r2, 0.0))
    near = np.where(inside, 0.2 + z, 0.0)
    near = near / near.max()  # stored maps are [0, 1]: scale the scene, and the slope with it
    true = np.zeros((h, w, 3))
    true[..., 2] = 1.0
    true[inside, 0] = (uu - cu)[inside]
    true[inside, 1] = (vv - cv)[inside]  # +Y down
    true[inside, 2] = z[inside]
    true /= np.linalg.norm(true, axis=-1, keepdims=True)
    dist = np.abs(np.sqrt(r2) - radius) * w
    return near.astype(np.float32), true, dist


def resize_near(near: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(
        Image.fromarray(near.astype(np.float32), "F").resize((w, h), Image.Resampling.BILINEAR)
    )


def gt_scenes(w: int, h: int) -> dict[str, np.ndarray]:
    out = {}
    for d in sorted((SHARED / "gt").glob("*/disparity.npy")) if (SHARED / "gt").is_dir() else []:
        disp = np.load(d).astype(np.float32)
        unknown = ~np.isfinite(disp) | (disp <= 0)  # 0 = unknown in these files
        if unknown.any():  # the peer cannot take NaN: give unknown pixels their nearest value
            from scipy import ndimage

            idx = ndimage.distance_transform_edt(
                unknown, return_distances=False, return_indices=True
            )
            disp = disp[tuple(idx)]
        lo, hi = float(disp.min()), float(disp.max())
        out[f"{d.parent.name} (GT disparity, ¼-px steps, ×{w / disp.shape[1]:.1f} upsampled)"] = (
            resize_near((disp - lo) / (hi - lo), w, h)
        )
    return out


def demo_photo(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    path = REPO / "examples" / "demo_catalog" / "astronaut.jpg"
    im = Image.open(path).convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(im), estimate_depth(im, max_side=1024)


def peer(near: np.ndarray, strength: float, method: str = "gaussian") -> np.ndarray:
    rgb = depth2normal.depth_to_normal(
        near, strength=strength * near.shape[1] / 255.0, method=method
    )
    return rgb.astype(np.float32) / 255.0 * 2.0 - 1.0


def angles(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> str:
    e = angular_error_deg(a, b)
    e = e[mask] if mask is not None else e.ravel()
    return f"{e.mean():.2f}° / {np.median(e):.2f}° / {np.percentile(e, 95):.2f}°"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 MP inputs, fewer repeats")
    args = ap.parse_args()
    w, h = (1152, 864) if args.quick else (2304, 1728)  # 3.98 MP, 4:3
    reps = 2 if args.quick else 5
    strength = 1.0
    print(
        f"# Derived assets benchmark: {w}×{h} ({w * h / 1e6:.2f} MP), one core, median of {reps}\n"
    )
    if depth2normal is None:
        print("_depth2normal is not installed: `pip install depth2normal` for the peer columns._\n")

    scenes: dict[str, np.ndarray] = {}
    sphere, sphere_true, sphere_dist = sphere_scene(w, h)
    scenes["sphere (analytic, float)"] = sphere
    scenes["sphere (analytic, 8-bit)"] = (np.round(sphere * 255) / 255).astype(np.float32)
    scenes.update(gt_scenes(w, h))
    rgb, demo_near = demo_photo(w, h)
    scenes["astronaut (local estimator)"] = demo_near

    print("## Normals: time per map\n")
    cols = ["input", "ours (s)", "ours PNG 8-bit encode (s)"]
    if depth2normal is not None:
        cols += [
            "depth2normal gaussian σ=1 (s)",
            "depth2normal sobel (s)",
            "angle ours vs d2n-gaussian: mean / median / p95, all pixels",
            "same, away from depth edges",
        ]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for name, near in scenes.items():
        t_ours, ours = timed(lambda near=near: normals_from_depth(near, strength, "directx"), reps)
        t_png, _ = timed(lambda ours=ours: encode_normals_png(ours, 8), max(1, reps // 2))
        row = [name, f"{t_ours:.3f}", f"{t_png:.3f}"]
        if depth2normal is not None:
            t_g, theirs = timed(lambda near=near: peer(near, strength), max(1, reps // 2))
            t_s, _ = timed(lambda near=near: peer(near, strength, "sobel"), max(1, reps // 2))
            span = float(np.percentile(near, 99) - np.percentile(near, 1)) or 1.0
            from scipy import ndimage

            edges = ndimage.binary_dilation(edge_mask(near, 0.05 * span), iterations=4)
            row += [f"{t_g:.3f}", f"{t_s:.3f}", angles(ours, theirs), angles(ours, theirs, ~edges)]
        print("| " + " | ".join(row) + " |")

    print("\n## Normals: accuracy on the analytic sphere (angle to the true normal)\n")
    away, rim_bg = sphere_dist > 3, (sphere_dist <= 3) & (sphere_true[..., 2] >= 1.0)
    k = strength * (0.2 + 0.3)  # undo the [0, 1] scaling of the scene
    print(
        "| input | method | mean / median / p95, > 3 px from the silhouette | background within 3 px of the silhouette (halo) |"
    )
    print("|---|---|---|---|")
    for label in ("sphere (analytic, float)", "sphere (analytic, 8-bit)"):
        near = scenes[label]
        ours = normals_from_depth(near, k, "directx")
        print(
            f"| {label} | ours | {angles(ours, sphere_true, away)} | {angles(ours, sphere_true, rim_bg)} |"
        )
        if depth2normal is not None:
            for m in ("gaussian", "sobel"):
                theirs = peer(near, k, m)
                print(
                    f"| {label} | depth2normal {m} | {angles(theirs, sphere_true, away)} | "
                    f"{angles(theirs, sphere_true, rim_bg)} |"
                )

    print("\n## Sprites: 5 layers + background fill + 32-frame WebP preview\n")
    print(
        "| input | total (s) | cut | alpha | fill | encode layers | preview | recomposition PSNR |"
    )
    print("|---|---|---|---|---|---|---|---|")
    sprite_inputs = {"astronaut (local estimator)": (rgb, demo_near)}
    for name, near in scenes.items():
        if name.startswith(("cones", "venus")):
            sprite_inputs[f"astronaut photo, {name} depth"] = (rgb, near)
    settings = SpriteSettings()
    for name, (img, near) in sprite_inputs.items():
        t, ss = timed(
            lambda img=img, near=near: build_sprites(img, near, settings), max(1, reps // 2)
        )
        files = ss.files()
        value = psnr(recompose(ss.manifest, files.__getitem__), img)
        parts = " | ".join(
            f"{ss.seconds[k]:.3f}" for k in ("cut", "alpha", "fill", "encode_layers", "preview")
        )
        print(
            f"| {name} | {t:.3f} | {parts} | {'∞ (identical)' if value == float('inf') else f'{value:.1f} dB'} |"
        )
    print(
        f"\n(preview: {ss.manifest['preview']['width']}×{ss.manifest['preview']['height']}, "
        f"{len(ss.preview) / 1024:.0f} KiB; all files {sum(map(len, files.values())) / 1e6:.1f} MB)"
    )


def kernel_budget(reps: int) -> None:
    """Issue #16's CPU budget per 1 MP image (one core): local depth ≤ 60 ms, normals ≤ 30 ms,
    sprites without encoding (cut + alpha/fills + background fill + preview frames) ≤ 80 ms."""
    from flux_depth_assets.config.models import NormalMapSettings

    print("\n## Kernel budget at 1 MP (1155×866), one core, median CPU seconds\n")
    print(
        "| photo | local depth (s) | normals, as the asset (s) | sprites w/o encoding (s) "
        "| cut | alpha + layer fills | background fill | preview frames | (encoding: layers, preview) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    smooth = NormalMapSettings().smooth
    for name in ("astronaut.jpg", "coffee.jpg", "chelsea.png"):
        im = Image.open(REPO / "examples" / "demo_catalog" / name).convert("RGB")
        im = im.resize((1155, 866), Image.Resampling.BICUBIC)
        t_depth, near = timed(lambda im=im: estimate_depth(im), reps)
        t_norm, _ = timed(
            lambda near=near: normals_from_depth(near, smooth_px=smooth * max(near.shape)), reps
        )
        rgb = np.asarray(im)
        runs = [build_sprites(rgb, near, SpriteSettings()).seconds for _ in range(reps + 1)][1:]
        sec = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        kernel = sec["cut"] + sec["alpha"] + sec["fill"] + sec["preview_frames"]
        print(
            f"| {name} | {t_depth:.3f} | {t_norm:.3f} | {kernel:.3f} | {sec['cut']:.3f} "
            f"| {sec['alpha']:.3f} | {sec['fill']:.3f} | {sec['preview_frames']:.3f} "
            f"| {sec['encode_layers']:.3f}, {sec['preview_encode']:.3f} |"
        )


if __name__ == "__main__":
    if "--budget" in sys.argv:
        kernel_budget(5)
    else:
        main()
