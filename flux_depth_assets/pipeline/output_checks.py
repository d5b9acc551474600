"""The depth_maps and normal_maps checks: read a sample of outputs, measure, decide. No Dagster.

Each function returns a `CheckOutcome` (passed, one readable line, figures). Thresholds were
set on the demo catalog with the local estimator and on broken fixtures (tests/test_output_checks.py):

| measure (pipeline.measures) | demo maps | broken fixture | threshold |
| --- | --- | --- | --- |
| edge_lift | 1.6 – 3.7 | noise 1.0, shifted map ≤ 1.3 | median ≥ 1.4 |
| vertical_prior_share | 0.70 – 0.94 | vertical ramp 1.0 | median < 0.985 |
| bottom_minus_top | 0.44 – 0.57 | inverted map < 0 | median > 0 |
| normal_roughness_deg | 0.9 – 9° | normals of noise ≈ 69° | median ≤ 30° |
"""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flux_depth_assets.depth.normals import decode_normals_png
from flux_depth_assets.pipeline import measures
from flux_depth_assets.pipeline.declarative_tests import CheckOutcome
from flux_depth_assets.pipeline.derived_run import (
    NORMALS_ASSET,
    DepthInput,
    derived_inputs,
    load_nearness,
    load_rgb,
)
from flux_depth_assets.pipeline.memo import Memo, content_key
from flux_depth_assets.pipeline.parallel import PoolConfig
from flux_depth_assets.storage.store import Storage

#: how many images a check opens per run (a large catalog costs the same as a small one)
SAMPLE = 12
MIN_EDGE_LIFT = 1.4
MAX_VERTICAL_PRIOR_SHARE = 0.985
MAX_ROUGHNESS_DEG = 30.0
MIN_RANGE = 1e-3  # p99 - p1 of valid nearness below this: a flat map
WORST = 5


@dataclass
class DepthSample:
    """What one pass over the sampled depth maps found (read once, used by four checks)."""

    images: int = 0
    problems: list[str] = field(default_factory=list)  # unreadable, wrong size, invalid, flat
    edge_lift: dict[str, float] = field(default_factory=dict)
    vertical_share: dict[str, float] = field(default_factory=dict)
    bottom_minus_top: dict[str, float] = field(default_factory=dict)


def _sample(store: Storage, catalog: str) -> list[DepthInput]:
    inputs, _skipped = derived_inputs(store, catalog)
    return sorted(inputs, key=lambda i: i.image_id)[:SAMPLE]


@dataclass(frozen=True)
class _DepthTask:
    """One sampled depth map, measured on the work pool: its bytes (read once, for the memo key
    too) and where its source image is."""

    store: Storage
    inp: DepthInput
    data: bytes


def _measure_depth(task: _DepthTask) -> dict[str, Any]:
    """The figures of one depth map, {"problem": why} when it cannot be measured, or
    {"unreadable": why} when a file would not read or decode (never raises: a pool task)."""
    store, inp = task.store, task.inp
    try:
        near = load_nearness(store, inp, task.data)
        if near.shape != (inp.height, inp.width):
            return {
                "problem": f"{near.shape[1]}x{near.shape[0]} px, "
                f"its source is {inp.width}x{inp.height}"
            }
        valid = np.isfinite(near)
        if not valid.any():
            return {"problem": "no valid pixel"}
        lo, hi = np.percentile(near[valid], [1, 99])
        if hi - lo < MIN_RANGE:
            return {"problem": f"flat (p99 - p1 = {hi - lo:.2g})"}
        filled = np.where(valid, near, 0.0).astype(np.float32)
        rgb = load_rgb(store, inp.normalized_path)
    except Exception as exc:  # noqa: BLE001 - a broken file is this check's finding
        return {"unreadable": f"{type(exc).__name__}: {exc}"}
    return {
        "edge_lift": measures.edge_lift(filled, rgb, valid),
        "vertical_share": measures.vertical_prior_share(filled, valid),
        "bottom_minus_top": measures.bottom_minus_top(filled, valid),
    }


def _readable(figures: dict[str, Any]) -> bool:
    """Unreadable findings are not remembered: a depth map's also reads its source image, which is
    not in the key and may be readable again next time (a broken map is only decoded again)."""
    return "unreadable" not in figures


def measure_depth_maps(store: Storage, catalog: str, pool: PoolConfig | None = None) -> DepthSample:
    """One pass over the sample, on the work pool; maps measured before with the same bytes are
    not decoded again (`pipeline.memo`)."""
    out = DepthSample()
    keyed: list[tuple[str, _DepthTask]] = []
    for inp in _sample(store, catalog):
        out.images += 1
        try:
            data = store.read_bytes(inp.depth_path)
        except Exception as exc:  # noqa: BLE001 - a missing file is this check's finding
            out.problems.append(f"{inp.image_id}: unreadable ({type(exc).__name__}: {exc})")
            continue
        key = content_key(
            data, inp.source_sha256, f"{inp.width}x{inp.height}", repr(inp.catalog_range)
        )
        keyed.append((key, _DepthTask(store, inp, data)))
    memo = Memo(store, catalog, "depth_maps")
    for (_, task), figures in zip(keyed, memo.map(keyed, _measure_depth, pool, keep=_readable)):
        image_id = task.inp.image_id
        if not _readable(figures):
            out.problems.append(f"{image_id}: unreadable ({figures['unreadable']})")
        elif "problem" in figures:
            out.problems.append(f"{image_id}: {figures['problem']}")
        else:
            out.edge_lift[image_id] = figures["edge_lift"]
            out.vertical_share[image_id] = figures["vertical_share"]
            out.bottom_minus_top[image_id] = figures["bottom_minus_top"]
    memo.save()
    return out


_PASSES: dict[str, Callable[[float, float], bool]] = {
    "≥": operator.ge,
    ">": operator.gt,
    "<": operator.lt,
    "≤": operator.le,
}


@dataclass(frozen=True)
class MedianRule:
    """A check on a per-image measure: passes when the sample's median is `op` `limit` (the
    images on the wrong side are listed worst first). `note` follows the rule in the message."""

    name: str
    what: str
    op: str  # ≥ > < ≤
    limit: float
    note: str = ""

    def verdict(self, values: dict[str, float]) -> CheckOutcome:
        name, passes = self.name, _PASSES[self.op]
        if not values:
            return CheckOutcome(
                False, f"{name}: no measurable depth map (see depth_readable)", {"images": 0}
            )
        median = statistics.median(values.values())
        low_is_bad = self.op in ("≥", ">")
        bad = sorted(
            ((v, k) for k, v in values.items() if not passes(v, self.limit)), reverse=not low_is_bad
        )
        meta: dict[str, Any] = {
            "images": len(values),
            "median": round(median, 4),
            "images_failing": len(bad),
        }
        if bad:
            meta["worst"] = ", ".join(f"{k}={v:.3g}" for v, k in bad[:WORST])
        passed = passes(median, self.limit)
        return CheckOutcome(
            passed,
            f"{name}: median {self.what} {median:.3g} over {len(values)} image(s) "
            f"({'meets' if passed else 'fails'} {self.op} {self.limit:g}{self.note})",
            meta,
        )


EDGES_AGREE = MedianRule(
    "edges_agree", "edge lift (image edges at depth edges vs chance)", "≥", MIN_EDGE_LIFT
)
NOT_VERTICAL_PRIOR = MedianRule(
    "not_vertical_prior", "share of variance explained by rows", "<", MAX_VERTICAL_PRIOR_SHARE
)
NEAR_AT_BOTTOM = MedianRule(
    "near_at_bottom",
    "nearness bottom third − top third",
    ">",
    0,
    " (else larger = farther: inverted)",
)
NORMALS_SMOOTH = MedianRule(
    "normals_smooth",
    "roughness (angle to the neighbourhood's mean normal, degrees)",
    "≤",
    MAX_ROUGHNESS_DEG,
    "°",
)


def depth_readable(sample: DepthSample) -> CheckOutcome:
    """Every sampled map decodes, has its source's size, has valid pixels and is not flat."""
    if sample.images == 0:
        return CheckOutcome(False, "depth_readable: no depth map to check", {"images": 0})
    meta = {"images": sample.images, "problems": len(sample.problems)}
    if sample.problems:
        return CheckOutcome(False, "depth_readable: " + "; ".join(sample.problems[:WORST]), meta)
    return CheckOutcome(
        True,
        f"depth_readable: {sample.images} map(s) decode at their source's "
        "size, with valid pixels and a non-flat range",
        meta,
    )


def edges_agree(sample: DepthSample) -> CheckOutcome:
    return EDGES_AGREE.verdict(sample.edge_lift)


def not_vertical_prior(sample: DepthSample) -> CheckOutcome:
    return NOT_VERTICAL_PRIOR.verdict(sample.vertical_share)


def near_at_bottom(sample: DepthSample) -> CheckOutcome:
    return NEAR_AT_BOTTOM.verdict(sample.bottom_minus_top)


def _roughness(data: bytes) -> dict[str, Any]:
    """{"roughness_deg": x} of one normal map's PNG, or {"unreadable": why} (a pool task)."""
    try:
        return {"roughness_deg": measures.normal_roughness_deg(decode_normals_png(data))}
    except Exception as exc:  # noqa: BLE001 - a broken file is this check's finding
        return {"unreadable": f"{type(exc).__name__}: {exc}"}


def normals_smooth(
    store: Storage, catalog: str, rows: list[dict], pool: PoolConfig | None = None
) -> CheckOutcome:
    """Normals are not dominated by texture noise (median neighbourhood angle per map)."""
    ok_rows = sorted(
        (r for r in rows if r["status"] in ("succeeded", "cached") and r.get("normal_path")),
        key=lambda r: r["image_id"],
    )[:SAMPLE]
    problems: list[str] = []
    keyed: list[tuple[str, bytes]] = []
    ids: list[str] = []
    for r in ok_rows:
        try:
            data = store.read_bytes(r["normal_path"])
            keyed.append((content_key(data), data))
            ids.append(r["image_id"])
        except Exception as exc:  # noqa: BLE001 - a missing file is this check's finding
            problems.append(f"{r['image_id']}: unreadable ({type(exc).__name__}: {exc})")
    memo = Memo(store, catalog, "normal_maps_roughness")
    values: dict[str, float] = {}
    for image_id, got in zip(ids, memo.map(keyed, _roughness, pool, keep=_readable)):
        if _readable(got):
            values[image_id] = got["roughness_deg"]
        else:
            problems.append(f"{image_id}: unreadable ({got['unreadable']})")
    memo.save()
    if problems:
        return CheckOutcome(
            False,
            f"{NORMALS_ASSET} normals_smooth: " + "; ".join(problems[:WORST]),
            {"images": len(ok_rows), "unreadable": len(problems)},
        )
    return NORMALS_SMOOTH.verdict(values)
