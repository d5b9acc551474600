"""What a per-image pass returns: one table row per image, counters and its wall time."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RowsRun:
    """The result shape the scan and the derived passes share (their guards read `share`)."""

    rows: list[dict]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def share(self, part: str, of: int) -> float:
        """`counts[part] / of`; 0 when `of` is 0 (a pass with nothing to do failed nothing)."""
        return self.counts.get(part, 0) / of if of else 0.0
