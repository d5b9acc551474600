"""What a run of a catalog's paid assets would cost, without calling any provider.

`depth_maps` always; `depth_renders` too for `render`-mode catalogs (their own provider and cache).

The images come from the last `source_images` table (the default: fast, reads no image), or from
a dry scan of the source (`scan=True`: lists and validates files in memory, writes nothing).
An image is pending when its provider call (cache key) is not in the shared cache.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime

from flux_depth_assets.config.models import CatalogConfig
from flux_depth_assets.imaging.validation import Rejected, validate_image_bytes
from flux_depth_assets.pipeline.scan import ASSET as SOURCE_IMAGES
from flux_depth_assets.providers.base import DepthProvider
from flux_depth_assets.sources import SourceError, list_objects
from flux_depth_assets.storage.cache import DepthCache
from flux_depth_assets.storage.store import Storage


@dataclass
class Estimate:
    catalog: str
    asset: str
    provider: str
    model: str
    price_usd: float
    basis: str  # where the image list came from, said plainly
    images: int = 0  # accepted, de-duplicated images
    cached: int = 0
    pending: int = 0
    cost_usd: float = 0.0  # pending × price
    unscanned_files: int = 0  # new or changed since the last scan, not validated
    unscanned_cost_usd: float = 0.0  # at most this much more (some may be rejected or cached)
    removed_files: int = 0
    budget_usd: float | None = None
    on_budget: str = "stop"
    verdict: str = ""
    would_process: int = 0
    would_skip: int = 0
    notes: list[str] = field(default_factory=list)
    shas: list[str] = field(default_factory=list, repr=False)  # the accepted images' sha256

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "shas"}


def estimate_catalog(
    catalog: CatalogConfig,
    provider: DepthProvider,
    store: Storage,
    scan: bool = False,
    asset: str = "depth_maps",
    cache_kind: str = "depth",
    same_images_as: Estimate | None = None,
) -> Estimate:
    """`asset`/`cache_kind`: `depth_maps`/`depth` or `depth_renders`/`render`.
    `same_images_as`: reuse another estimate's image list (no second listing or scan)."""
    est = Estimate(
        catalog=catalog.name,
        asset=asset,
        provider=provider.name,
        model=provider.model,
        price_usd=float(provider.price_usd),
        basis="",
        budget_usd=catalog.budget_usd_per_run,
        on_budget=catalog.on_budget,
    )
    if same_images_as is not None:
        src = same_images_as
        est.basis, est.notes, est.shas = src.basis, list(src.notes), list(src.shas)
        est.unscanned_files, est.removed_files = src.unscanned_files, src.removed_files
    else:
        est.shas = _image_shas(catalog, store, scan, est)
    cache = DepthCache(store, kind=cache_kind)
    est.images = len(est.shas)
    est.cached = sum(cache.has(provider.cache_key(s)) for s in est.shas)
    est.pending = est.images - est.cached
    est.cost_usd = est.pending * est.price_usd
    est.unscanned_cost_usd = est.unscanned_files * est.price_usd
    _verdict(est)
    return est


def _image_shas(catalog: CatalogConfig, store: Storage, scan: bool, est: Estimate) -> list[str]:
    previous = store.read_partition(SOURCE_IMAGES, catalog.name)
    prev_rows = previous.to_pylist() if previous is not None else []
    if previous is None and not scan:
        est.notes.append(
            "no source_images table yet: scanning the source instead (nothing is written)"
        )
        scan = True
    if scan:
        shas = _dry_scan(catalog, prev_rows, est)
    else:
        scanned_at = max((r["scanned_at"] for r in prev_rows if r["scanned_at"]), default=None)
        est.basis = (
            "last source_images table"
            + (f" (scanned {_fmt(scanned_at)})" if scanned_at else "")
            + "; pass --scan to rescan the source"
        )
        shas = [r["sha256"] for r in prev_rows if r["status"] == "accepted"]
        _count_changes(catalog, prev_rows, est)
    return shas


def _fmt(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC")


def _unchanged(prev: dict | None, size: int, mtime: float) -> bool:
    return (
        prev is not None
        and prev["bytes"] == size
        and prev["mtime"] is not None
        and abs(prev["mtime"].timestamp() - mtime) <= 1e-3
    )


def _count_changes(catalog: CatalogConfig, prev_rows: list[dict], est: Estimate) -> None:
    """New/changed/removed files since the last scan, from a listing only (no file is read)."""
    try:
        objects = list_objects(catalog.source)
    except SourceError as exc:
        est.notes.append(f"source not listed ({exc}); new uploads are not counted")
        return
    by_uri = {r["source_uri"]: r for r in prev_rows}
    seen = set()
    for obj in objects:
        seen.add(obj.uri)
        if not _unchanged(by_uri.get(obj.uri), obj.size, obj.mtime):
            est.unscanned_files += 1
    est.removed_files = len(set(by_uri) - seen)


def _dry_scan(catalog: CatalogConfig, prev_rows: list[dict], est: Estimate) -> list[str]:
    """Accepted content hashes from listing + validating in memory; unchanged files are not read."""
    est.basis = "dry scan of the source (validated in memory, nothing written)"
    by_uri = {r["source_uri"]: r for r in prev_rows}
    shas: list[str] = []
    seen: set[str] = set()
    for obj in list_objects(catalog.source):
        prev = by_uri.get(obj.uri)
        if (
            prev is not None
            and _unchanged(prev, obj.size, obj.mtime)
            and prev["status"] != "rejected"
            and prev["sha256"]
        ):
            sha = prev["sha256"]
        elif _unchanged(prev, obj.size, obj.mtime) or obj.size > catalog.max_image_bytes:
            continue
        else:
            try:
                result = validate_image_bytes(
                    obj.read(),
                    max_bytes=catalog.max_image_bytes,
                    max_pixels=catalog.max_image_pixels,
                )
            except Exception:  # noqa: BLE001,S112 - unreadable: the real scan rejects it too
                continue
            if isinstance(result, Rejected):
                continue
            sha = result.sha256
        if sha not in seen:
            seen.add(sha)
            shas.append(sha)
    return shas


def _verdict(est: Estimate) -> None:
    est.would_process, est.would_skip = est.pending, 0
    if est.pending == 0:
        est.verdict = "nothing to pay for: every image is cached"
    elif est.price_usd <= 0:
        est.verdict = f"free provider ({est.provider}): no cost"
    elif est.budget_usd is None:
        est.verdict = "no budget_usd_per_run set: the run would pay in full"
    elif est.cost_usd <= est.budget_usd + 1e-9:
        est.verdict = f"within budget_usd_per_run ${est.budget_usd:.2f}"
    elif est.on_budget == "partial":
        n = math.floor(est.budget_usd / est.price_usd + 1e-9)
        est.would_process, est.would_skip = n, est.pending - n
        est.verdict = (
            f"over budget_usd_per_run ${est.budget_usd:.2f}: on_budget=partial would "
            f"process {n} and record {est.pending - n} as skipped_budget"
        )
    else:
        est.would_process, est.would_skip = 0, est.pending
        est.verdict = (
            f"over budget_usd_per_run ${est.budget_usd:.2f}: the run would stop before "
            f"any paid call (on_budget=stop)"
        )
