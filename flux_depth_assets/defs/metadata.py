"""Materialization metadata a person reads at a glance, built the same way for every asset."""

from __future__ import annotations

from typing import Any
from collections.abc import Iterable

import dagster as dg


def preview_table(rows: Iterable[dict], columns: list[str], limit: int = 5) -> dg.MetadataValue:
    """A small Markdown table of the first rows (paths, statuses, reasons)."""
    rows = list(rows)[:limit]
    if not rows:
        return dg.MetadataValue.md("_no rows_")
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_cell(r.get(c)) for c in columns) + " |\n" for r in rows)
    return dg.MetadataValue.md(head + body)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")[:120]


def counts_metadata(counts: dict[str, int], seconds: float, row_count: int) -> dict[str, Any]:
    meta: dict[str, Any] = {k: dg.MetadataValue.int(int(v)) for k, v in counts.items()}
    meta["seconds"] = dg.MetadataValue.float(round(seconds, 3))
    meta["dagster/row_count"] = dg.MetadataValue.int(row_count)
    return meta
