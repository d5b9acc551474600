"""The failure-ratio gate of a per-catalog asset, computed from the rows its table holds.

One implementation for every asset (source_images, depth_maps, depth_renders and the derived
assets): the asset reports it as a blocking check on the rows it just wrote, and a downstream
asset re-evaluates it on its upstream's stored table before starting. Both read the same rows,
so what Dagster says and what storage holds cannot disagree. No Dagster here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: statuses that count against the gate: a file the scan rejected, an image that failed
FAILED_STATUSES = frozenset({"rejected", "failed"})
#: statuses that were never attempted by this asset (their cause is upstream, reported there)
NOT_ATTEMPTED = frozenset({"skipped_no_depth"})
GATE_CHECK = "failure_ratio"


@dataclass(frozen=True)
class GateOutcome:
    passed: bool
    failed: int
    attempted: int
    ratio: float
    threshold: float
    description: str

    def metadata(self) -> dict[str, Any]:
        return {
            "failed": self.failed,
            "attempted": self.attempted,
            "failure_ratio": round(self.ratio, 4),
            "max_failure_ratio": self.threshold,
        }


def evaluate_gate(
    rows: Iterable[Mapping[str, Any]], *, asset: str, catalog: str, threshold: float, where: str
) -> GateOutcome:
    """Failed rows / attempted rows against the catalog's `max_failure_ratio`.

    `where` names the table holding the reasons, so the one line a person reads says where to look.
    """
    statuses = [r.get("status") for r in rows]
    attempted = sum(s not in NOT_ATTEMPTED for s in statuses)
    failed = sum(s in FAILED_STATUSES for s in statuses)
    ratio = failed / attempted if attempted else 0.0
    passed = ratio <= threshold
    what = "files rejected" if asset == "source_images" else f"{asset.replace('_', ' ')} failed"
    head = f"catalog {catalog!r}: {failed} of {attempted} {what} ({ratio:.0%})"
    text = (
        f"{head}, within max_failure_ratio {threshold:.0%}"
        if passed
        else f"{head}, over max_failure_ratio {threshold:.0%}; reasons are in {where}"
    )
    return GateOutcome(passed, failed, attempted, ratio, threshold, text)
