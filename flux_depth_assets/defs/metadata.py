"""Materialization metadata a person reads at a glance, built the same way for every asset."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import dagster as dg


def preview_table(rows: Iterable[dict], columns: list[str], limit: int = 5) -> dg.MetadataValue:
    """A small Markdown table of the first rows (statuses, reasons, file names).

    Narrow enough for the asset page's panel: `*_path`/`*_uri` columns show the file name only
    (the folder is the asset's `output_dir`), ids are cut to 12 characters, text to 60.
    """
    rows = list(rows)[:limit]
    if not rows:
        return dg.MetadataValue.md("_no rows_")
    head = "| " + " | ".join(_header(c) for c in columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_cell(c, r.get(c)) for c in columns) + " |\n" for r in rows)
    return dg.MetadataValue.md(head + body)


def _header(column: str) -> str:
    return (
        column.removesuffix("_path").removesuffix("_uri")
        if column.endswith(("_path", "_uri"))
        else column
    )


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    if column.endswith(("_path", "_uri")):
        text = text.rstrip("/").rsplit("/", 1)[-1]
    elif column == "image_id":
        text = text[:12]
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 60 else text[:59] + "…"


def counts_metadata(counts: dict[str, int], seconds: float, row_count: int) -> dict[str, Any]:
    meta: dict[str, Any] = {k: dg.MetadataValue.int(int(v)) for k, v in counts.items()}
    meta["seconds"] = dg.MetadataValue.float(round(seconds, 3))
    meta["dagster/row_count"] = dg.MetadataValue.int(row_count)
    return meta
