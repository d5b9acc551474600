"""Depth-quality benchmark: a provider against ground truth, next to two trivial baselines.

    .venv/bin/python benchmarks/depth_quality.py                      # local provider, ../shared/data/gt
    .venv/bin/python benchmarks/depth_quality.py --loo                # + leave-one-scene-out figures
    .venv/bin/python benchmarks/depth_quality.py --speed              # + seconds per megapixel, one core
    .venv/bin/python benchmarks/depth_quality.py --provider onnx --model-path depth_anything_v2_vits.onnx

Every scene is a folder with `image.png` (RGB), `disparity.npy` (float32 GT disparity, 0 = unknown) or
`depth.npy` (GT depth, 0 = unknown), and a `manifest.json`. Each prediction (relative inverse depth,
larger = nearer) is aligned to the GT disparity with a least-squares scale and shift on the valid
pixels, then scored in depth space (AbsRel, δ1 < 1.25): `flux_depth_assets.depth.quality`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from flux_depth_assets.depth import quality  # noqa: E402
from flux_depth_assets.depth.local_estimator import (  # noqa: E402
    DEFAULT_PARAMS,
    EstimatorParams,
    estimate_depth,
)

DEFAULT_DATA = REPO.parent / "shared" / "data" / "gt"

# Leave-one-scene-out grids. "small" (the default): the two settings of the local estimator that
# matter most, everything else at its default. "wide" also re-chooses the settings that were fixed
# while developing with every scene in view (edge blur, edge-weight ensemble), 81 combinations.
LOO_GRIDS: dict[str, dict[str, tuple]] = {
    "small": {
        "edge_threshold": (0.3, 0.5, 0.7),
        "horizon": (0.0, 0.1, 0.2),
    },
    "wide": {
        "edge_threshold": (0.3, 0.5, 0.7),
        "horizon": (0.0, 0.1, 0.2),
        "edge_sigma": (1.0, 2.0, 3.0),
        "edge_weights": ((0.01, 0.03, 0.1), (0.03, 0.1, 0.3), (0.1, 0.3, 1.0)),
    },
}

Predictor = Callable[[Image.Image], np.ndarray]


@dataclass
class Scene:
    name: str
    image: Image.Image
    gt_disparity: np.ndarray


def load_scenes(root: Path) -> list[Scene]:
    """Every sub-folder of `root` with a manifest, an image and a GT disparity/depth map."""
    scenes = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        manifest = d / "manifest.json"
        if not manifest.exists():
            continue
        meta = json.loads(manifest.read_text())
        image_path = d / meta.get("image", "image.png")
        if (d / "disparity.npy").exists():
            gt = np.load(d / "disparity.npy").astype(np.float32)
        elif (d / "depth.npy").exists():
            depth = np.load(d / "depth.npy").astype(np.float32)
            gt = np.where(np.isfinite(depth) & (depth > 0), 1.0 / np.maximum(depth, 1e-12), 0.0)
            gt = gt.astype(np.float32)
        else:
            continue
        image = Image.open(image_path)
        image.load()
        image = image.convert("RGB")
        if (image.height, image.width) != gt.shape:
            raise ValueError(f"{d.name}: image {image.size} and GT {gt.shape[::-1]} differ in size")
        scenes.append(Scene(d.name, image, gt))
    if not scenes:
        raise SystemExit(f"no scenes with ground truth under {root}")
    return scenes


def score_all(scenes: list[Scene], predict: Predictor) -> dict[str, quality.DepthScores]:
    return {s.name: quality.score_disparity(predict(s.image), s.gt_disparity) for s in scenes}


def baselines() -> dict[str, Predictor]:
    return {
        "constant": lambda im: quality.constant_baseline((im.height, im.width)),
        "vertical": lambda im: quality.vertical_gradient_baseline((im.height, im.width)),
    }


def local_predictor(params: EstimatorParams = DEFAULT_PARAMS) -> Predictor:
    return lambda im: estimate_depth(im, params=params)


def provider_predictor(args) -> Predictor:
    """Any configured provider through its public interface (predict_many), e.g. `onnx`."""
    from flux_depth_assets.config.models import LocalProviderConfig, OnnxProviderConfig
    from flux_depth_assets.providers.base import ProviderInput
    from flux_depth_assets.providers.factory import build_provider

    if args.provider == "onnx":
        if not args.model_path:
            raise SystemExit("--provider onnx needs --model-path")
        config = OnnxProviderConfig(
            model_path=args.model_path,
            family=args.family,
            **({"input_size": args.input_size} if args.input_size else {}),
        )
    else:
        config = LocalProviderConfig()
    provider = build_provider(config)
    provider.check_ready()

    def predict(im: Image.Image) -> np.ndarray:
        [pred] = provider.predict_many([ProviderInput("bench", "", "", lambda: im)])
        if pred.depth is None:
            raise RuntimeError(f"{args.provider} failed: {pred.error}")
        depth = np.asarray(pred.depth, dtype=np.float32)
        return 1.0 / np.maximum(depth, 1e-6) if pred.metric else depth

    return predict


# --------------------------------------------------------------------------- leave-one-scene-out


def grid_params(grid: dict[str, tuple]) -> list[EstimatorParams]:
    keys = list(grid)
    return [
        replace(DEFAULT_PARAMS, **dict(zip(keys, values)))
        for values in itertools.product(*(grid[k] for k in keys))
    ]


def _choose(
    results: dict[EstimatorParams, dict[str, quality.DepthScores]],
    train: list[str],
    rule: str = "mean",
    reference: dict[str, quality.DepthScores] | None = None,
):
    """The grid point chosen on the training scenes.

    rule "mean": highest mean δ1 (ties: lower mean AbsRel).
    rule "maximin": highest worst-case δ1 gain over `reference` (the vertical baseline) on any
    training scene (ties: higher mean δ1) — guards against settings that shine on most scenes and
    collapse on one.
    """

    def mean_key(p):
        r = results[p]
        return (
            round(float(np.mean([r[s].delta1 for s in train])), 6),
            -float(np.mean([r[s].abs_rel for s in train])),
        )

    def maximin_key(p):
        r = results[p]
        worst = min(r[s].delta1 - reference[s].delta1 for s in train)
        return (round(float(worst), 6),) + mean_key(p)

    if rule == "maximin":
        if reference is None:
            raise ValueError("the maximin rule needs reference scores")
        return max(results, key=maximin_key)
    return max(results, key=mean_key)


def leave_one_out(
    scenes: list[Scene], grid: dict[str, tuple], rule: str = "mean"
) -> tuple[dict[str, quality.DepthScores], dict[str, EstimatorParams]]:
    """For each scene: choose the grid point best on the *other* scenes, score it on this one."""
    results = {p: score_all(scenes, local_predictor(p)) for p in grid_params(grid)}
    reference = score_all(scenes, baselines()["vertical"])
    names = [s.name for s in scenes]
    held, chosen = {}, {}
    for name in names:
        best = _choose(results, [n for n in names if n != name], rule, reference)
        held[name], chosen[name] = results[best][name], best
    return held, chosen


# --------------------------------------------------------------------------- normals


def gt_normals(height: np.ndarray) -> np.ndarray:
    """The fixed reference: plain differences of the measured disparity (its ¼-px terraces
    smoothed by `dequantize`), no shape smoothing: GT has no texture to suppress."""
    from flux_depth_assets.depth.normals import normals_from_depth

    return normals_from_depth(height, smooth_px=0.0)


def pipeline_normals(height: np.ndarray) -> np.ndarray:
    """What the `normal_maps` asset does with a depth map (default settings)."""
    from flux_depth_assets.config.models import NormalMapSettings
    from flux_depth_assets.depth.normals import normals_from_depth

    return normals_from_depth(height, smooth_px=NormalMapSettings().smooth * max(height.shape))


def flat_normals(height: np.ndarray) -> np.ndarray:
    out = np.zeros(height.shape + (3,), dtype=np.float32)
    out[..., 2] = 1.0
    return out


def normal_errors(scenes: list[Scene], predict: Predictor) -> dict[str, dict[str, float]]:
    """Mean angular error (degrees) per scene: normals of the prediction vs normals of the GT,
    inside objects away from depth edges; the flat (0, 0, 1) map and the vertical gradient as
    references."""
    out: dict[str, dict[str, float]] = {}
    for s in scenes:
        pred = predict(s.image)
        vert = quality.vertical_gradient_baseline(s.gt_disparity.shape)
        out[s.name] = {
            "pred": quality.normal_error_deg(pred, s.gt_disparity, pipeline_normals, gt_normals),
            "flat": quality.normal_error_deg(pred, s.gt_disparity, flat_normals, gt_normals),
            "vertical": quality.normal_error_deg(
                vert, s.gt_disparity, pipeline_normals, gt_normals
            ),
            "interior_share": float(quality.interior_mask(s.gt_disparity).mean()),
        }
    return out


def format_normals(errors: dict[str, dict[str, float]], name: str) -> str:
    head = (
        f"| scene | {name} normals error (°) ↓ | flat (0,0,1) error (°) | vertical error (°) "
        "| pixels scored |"
    )
    lines = [head, "|---|---:|---:|---:|---:|"]
    for n, e in errors.items():
        lines.append(
            f"| {n} | {e['pred']:.1f} | {e['flat']:.1f} | {e['vertical']:.1f} "
            f"| {e['interior_share']:.0%} |"
        )
    mean = {
        k: float(np.mean([e[k] for e in errors.values()])) for k in ("pred", "flat", "vertical")
    }
    lines.append(
        f"| **average** | **{mean['pred']:.1f}** | {mean['flat']:.1f} | {mean['vertical']:.1f} | |"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- speed


def measure_speed(
    sizes=((450, 375), (1000, 1000), (2000, 1500)), repeats: int = 3
) -> list[tuple[str, float, float]]:
    """Seconds per megapixel of `estimate_depth` on synthetic photos (one thread: set the env first)."""
    rng = np.random.default_rng(0)
    rows = []
    for w, h in sizes:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 37.0) * np.cos(yy / 53.0)], -1)
        noisy = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
        image = Image.fromarray((noisy * 255).astype(np.uint8))
        estimate_depth(image)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            estimate_depth(image)
            times.append(time.perf_counter() - t0)
        best = min(times)
        rows.append((f"{w}x{h}", best, best / (w * h / 1e6)))
    return rows


# --------------------------------------------------------------------------- printing


def _avg(scores: dict[str, quality.DepthScores]) -> tuple[float, float]:
    return (
        float(np.mean([s.abs_rel for s in scores.values()])),
        float(np.mean([s.delta1 for s in scores.values()])),
    )


def format_table(columns: dict[str, dict[str, quality.DepthScores]]) -> str:
    names = list(next(iter(columns.values())))
    head = "| scene | " + " | ".join(f"{c} AbsRel ↓ | {c} δ1 ↑" for c in columns) + " |"
    sep = "|---|" + "---:|---:|" * len(columns)
    lines = [head, sep]
    for n in names + ["**average**"]:
        cells = []
        for col in columns.values():
            a, d = _avg(col) if n == "**average**" else (col[n].abs_rel, col[n].delta1)
            cells += [f"{a:.3f}", f"{d:.3f}"]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_line() -> str:
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    return (
        f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}, OMP_NUM_THREADS={threads}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--provider", default="local", choices=["local", "onnx"])
    ap.add_argument(
        "--data", type=Path, default=None, help=f"folder of GT scenes (default {DEFAULT_DATA})"
    )
    ap.add_argument("--loo", action="store_true", help="leave-one-scene-out figures for `local`")
    ap.add_argument(
        "--loo-grid",
        default="small",
        choices=sorted(LOO_GRIDS),
        help="which settings --loo re-chooses per held-out scene",
    )
    ap.add_argument(
        "--loo-rule",
        default="mean",
        choices=["mean", "maximin"],
        help="how --loo chooses on the training scenes (see _choose)",
    )
    ap.add_argument("--speed", action="store_true", help="seconds per megapixel of `local`")
    ap.add_argument("--model-path", help="ONNX model file (with --provider onnx)")
    ap.add_argument("--family", default="depth_anything_v2", choices=["depth_anything_v2", "midas"])
    ap.add_argument("--input-size", type=int, default=None)
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    ap.add_argument(
        "--save-dir", type=Path, help="write image | GT | prediction | vertical PNGs here"
    )
    args = ap.parse_args(argv)

    print(f"command: {shlex.join([Path(sys.executable).name] + sys.argv)}")
    print(machine_line())
    if args.data is None:
        if not DEFAULT_DATA.is_dir():  # e.g. `make bench` on a machine without ../shared
            print(f"no ground truth at {DEFAULT_DATA}: skipped (pass --data DIR)")
            return 0
        args.data = DEFAULT_DATA
    if not args.data.is_dir():
        raise SystemExit(f"--data {args.data}: not a folder")
    scenes = load_scenes(args.data)
    print(f"data: {args.data} ({len(scenes)} scenes: {', '.join(s.name for s in scenes)})\n")

    predict = local_predictor() if args.provider == "local" else provider_predictor(args)
    t0 = time.perf_counter()
    columns = {args.provider: score_all(scenes, predict)}
    elapsed = time.perf_counter() - t0
    for name, fn in baselines().items():
        columns[name] = score_all(scenes, fn)
    print(f"## {args.provider} (one parameter set for all scenes)\n")
    print(format_table(columns))
    print(f"\n{args.provider}: {elapsed:.2f} s for {len(scenes)} scenes (prediction + scoring)")
    errors = normal_errors(scenes, predict)
    print(
        f"\n## normal maps: {args.provider} depth → normals vs GT disparity → normals "
        "(mean angle inside objects, ≥ 4 px from depth edges)\n"
    )
    print(format_normals(errors, args.provider))
    out: dict = {
        "command": sys.argv,
        "machine": machine_line(),
        "scores": {c: {n: vars(s) for n, s in col.items()} for c, col in columns.items()},
        "normal_error_deg": errors,
    }

    if args.loo:
        if args.provider != "local":
            raise SystemExit(
                "--loo chooses the local estimator's settings; use it with --provider local"
            )
        loo_grid = LOO_GRIDS[args.loo_grid]
        held, chosen = leave_one_out(scenes, loo_grid, args.loo_rule)
        grid = " × ".join(f"{k} ∈ {{{', '.join(map(str, v))}}}" for k, v in loo_grid.items())
        print(
            f"\n## local, leave-one-scene-out, {args.loo_grid} grid ({grid}; chosen on the other "
            f"scenes by the {args.loo_rule!r} rule)\n"
        )
        print(
            format_table(
                {
                    "local (LOO)": held,
                    "constant": columns["constant"],
                    "vertical": columns["vertical"],
                }
            )
        )
        print(
            "\nchosen per held-out scene: "
            + "; ".join(
                f"{n}: " + ", ".join(f"{k}={getattr(p, k)}" for k in loo_grid)
                for n, p in chosen.items()
            )
        )
        out["loo"] = {n: vars(s) for n, s in held.items()}
        out["loo_chosen"] = {n: {k: getattr(p, k) for k in loo_grid} for n, p in chosen.items()}

    if args.speed:
        threads = "one thread" if os.environ.get("OMP_NUM_THREADS") == "1" else "threads: default"
        print(f"\n## local speed ({threads})\n")
        print("| image | seconds | s per megapixel |\n|---|---:|---:|")
        rows = measure_speed()
        for size, secs, per_mp in rows:
            print(f"| {size} | {secs:.3f} | {per_mp:.3f} |")
        out["speed"] = [{"size": s, "seconds": t, "s_per_mp": p} for s, t, p in rows]

    if args.save_dir:
        _save_panels(args.save_dir, scenes, predict)
        print(f"\npanels written to {args.save_dir}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


def _save_panels(folder: Path, scenes: list[Scene], predict: Predictor) -> None:
    folder.mkdir(parents=True, exist_ok=True)

    def gray(x: np.ndarray, mask: np.ndarray | None = None) -> Image.Image:
        v = x[mask] if mask is not None else x.ravel()
        lo, hi = float(v.min()), float(v.max())
        g = np.clip((x - lo) / (hi - lo + 1e-12), 0, 1)
        if mask is not None:
            g = np.where(mask, g, 0)
        return Image.fromarray((g * 255).astype(np.uint8)).convert("RGB")

    for s in scenes:
        mask = quality.valid_mask(s.gt_disparity)
        tiles = [
            s.image,
            gray(s.gt_disparity, mask),
            gray(predict(s.image)),
            gray(quality.vertical_gradient_baseline(s.gt_disparity.shape)),
        ]
        w, h = s.image.size
        panel = Image.new("RGB", (w * len(tiles), h))
        for i, t in enumerate(tiles):
            panel.paste(t, (i * w, 0))
        panel.save(folder / f"{s.name}.png")


if __name__ == "__main__":
    raise SystemExit(main())
