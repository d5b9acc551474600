"""`Storage.partition_rows`: absent or unreadable snapshots are a recompute; other errors surface."""

from __future__ import annotations

import logging

import pyarrow as pa
import pytest

from flux_depth_assets.storage.store import Storage


def store_with_snapshot(tmp_path) -> Storage:
    store = Storage(str(tmp_path / "root"))
    table = pa.table({"image_id": ["a", "b"], "status": ["accepted", "rejected"]})
    store.write_partition("source_images", "shop", table)
    return store


def test_rows_by_key_and_empty_when_absent(tmp_path) -> None:
    store = store_with_snapshot(tmp_path)
    rows = store.partition_rows("source_images", "shop")
    assert rows == {
        "a": {"image_id": "a", "status": "accepted"},
        "b": {"image_id": "b", "status": "rejected"},
    }
    assert store.partition_rows("source_images", "other") == {}


def test_a_corrupt_snapshot_is_logged_with_its_cause_and_recomputed(tmp_path, caplog) -> None:
    store = store_with_snapshot(tmp_path)
    store.write_bytes(Storage.table_rel("source_images", "shop"), b"not parquet at all")
    with caplog.at_level(logging.WARNING, logger="flux_depth_assets.storage.store"):
        assert store.partition_rows("source_images", "shop") == {}
    [line] = caplog.messages
    assert "catalog=shop/part-0.parquet" in line and "unreadable snapshot" in line
    assert "ArrowInvalid" in line


def test_a_snapshot_that_cannot_take_the_schema_is_a_recompute(tmp_path) -> None:
    store = store_with_snapshot(tmp_path)
    schema = pa.schema([("image_id", pa.string()), ("status", pa.int64())])
    assert store.partition_rows("source_images", "shop", schema=schema) == {}


@pytest.mark.parametrize("error", [PermissionError("AccessDenied"), ConnectionError("reset")])
def test_storage_errors_propagate_instead_of_a_silent_rescan(tmp_path, monkeypatch, error) -> None:
    store = store_with_snapshot(tmp_path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(store.fs, "open", refuse)  # object stores read through fsspec
    monkeypatch.setattr("flux_depth_assets.storage.store.pq.read_table", refuse)  # local
    with pytest.raises(type(error)):
        store.partition_rows("source_images", "shop")
