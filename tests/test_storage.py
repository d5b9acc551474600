"""The storage root: atomic writes, the table/file layout contract, path safety, encoding."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from flux_depth_assets.depth.encoding import decode_png16, encode_png16, quantize, to_nearness
from flux_depth_assets.paths import UnsafePathError
from flux_depth_assets.storage.cache import DepthCache
from flux_depth_assets.storage.schemas import SOURCE_IMAGES, table_from_rows
from flux_depth_assets.storage.store import Storage


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    store = Storage(str(tmp_path / "root"))
    store.write_bytes("catalogs/c/a/x.bin", b"one")
    store.write_bytes("catalogs/c/a/x.bin", b"two")
    folder = tmp_path / "root" / "catalogs" / "c" / "a"
    assert sorted(os.listdir(folder)) == ["x.bin"]
    assert store.read_bytes("catalogs/c/a/x.bin") == b"two"


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    store = Storage(str(tmp_path))
    store.write_bytes("f.bin", b"good")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.write_bytes("f.bin", b"bad")
    assert (tmp_path / "f.bin").read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["f.bin"]


@pytest.mark.parametrize("bad", ["../evil", "a/b", ".hidden", "", "x/../../y"])
def test_path_traversal_in_names_is_refused(tmp_path, bad):
    with pytest.raises(UnsafePathError):
        Storage.file_rel("demo", "depth_maps", bad, "png")
    with pytest.raises(UnsafePathError):
        Storage.table_rel("depth_maps", bad)


def test_partition_tables_are_hive_readable_with_catalog_column(tmp_path):
    store = Storage(str(tmp_path))
    for cat, n in [("a", 2), ("b", 3)]:
        rows = [{"image_id": f"{cat}{i}", "status": "accepted", "width": 10} for i in range(n)]
        store.write_partition("source_images", cat, table_from_rows(rows, SOURCE_IMAGES))
    assert (tmp_path / "tables" / "source_images" / "catalog=a" / "part-0.parquet").exists()
    table = ds.dataset(
        tmp_path / "tables" / "source_images", format="parquet", partitioning="hive"
    ).to_table()
    assert table.num_rows == 5
    assert sorted(set(table.column("catalog").to_pylist())) == ["a", "b"]
    assert table.schema.field("width").type == pa.int32()


def test_png16_round_trip_keeps_order_and_marks_invalid():
    depth = np.array([[0.1, 0.5], [np.nan, 2.0]], dtype=np.float32)
    q, lo, hi = quantize(depth)
    assert (lo, hi) == (pytest.approx(0.1), pytest.approx(2.0))
    assert q[1, 0] == 0 and q[0, 0] == 1 and q[1, 1] == 65535
    back = decode_png16(encode_png16(q))
    assert np.isnan(back[1, 0])
    assert back[0, 0] < back[0, 1] < back[1, 1]


def test_metric_depth_becomes_nearness():
    near = to_nearness(np.array([[1.0, 4.0, 0.0]], dtype=np.float32), metric=True)
    assert near[0, 0] > near[0, 1] and np.isnan(near[0, 2])


def test_cache_round_trip(tmp_path):
    cache = DepthCache(Storage(str(tmp_path)))
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, np.ones((3, 4), np.float32), {"metric": False})
    hit = cache.get("ab" * 32)
    assert hit.depth.shape == (3, 4) and hit.meta == {"metric": False}


def test_file_index_lists_nested_files_once_and_tracks_writes(tmp_path):
    from flux_depth_assets.storage.store import FileIndex

    store = Storage(str(tmp_path))
    store.write_bytes("catalogs/c/a/x.png", b"1")
    store.write_bytes("catalogs/c/a/sub/y.json", b"2")
    store.write_bytes("catalogs/c/b/z.png", b"3")
    assert store.files_under("catalogs/c/a") == {"catalogs/c/a/x.png", "catalogs/c/a/sub/y.json"}
    assert store.files_under("catalogs/none") == set()
    index = FileIndex(store, Storage.dir_rel("c", "a"))
    assert "catalogs/c/a/sub/y.json" in index and "catalogs/c/b/z.png" not in index
    index.add("catalogs/c/a/new.png")
    assert "catalogs/c/a/new.png" in index
    # the local listing and fsspec's agree, and both stay inside their folder
    assert store.files_under("catalogs/c") == {
        p.removeprefix(store.base + "/") for p in store.fs.find(store.full("catalogs/c"))
    }
    store.write_bytes("catalogs/c/a.png", b"not inside catalogs/c/a/")
    assert "catalogs/c/a.png" not in store.files_under("catalogs/c/a")


def test_a_rewritten_table_is_never_served_from_the_read_cache(tmp_path):
    store = Storage(str(tmp_path))
    rel = Storage.table_rel("depth_maps", "c")
    for value in ("aaaa", "bbbb", "cccc"):  # same size every time, written back to back
        store.write_table(rel, pa.table({"image_id": [value]}))
        assert store.read_table(rel).column("image_id").to_pylist() == [value]
    assert store.read_table(rel) is store.read_table(rel)  # unchanged: decoded once


def test_create_exclusive_creates_once_and_never_replaces(tmp_path):
    store = Storage(str(tmp_path / "root"))
    assert store.create_exclusive("leases/a.json", b"first") is True
    assert store.create_exclusive("leases/a.json", b"second") is False
    assert store.read_bytes("leases/a.json") == b"first"
    assert os.listdir(tmp_path / "root" / "leases") == ["a.json"]  # no temp files left


def test_create_exclusive_has_one_winner_among_racing_processes(tmp_path):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # not multiprocessing.Pool: its exit SIGTERMs and joins its workers, and once hung in that
    # join (300 s, a worker that never exited); this pool's workers leave when told to
    with ProcessPoolExecutor(4, mp_context=mp.get_context("spawn")) as pool:
        wins = list(pool.map(_race_create, [str(tmp_path)] * 8, range(8), timeout=120))
    assert sum(wins) == 1
    winner = wins.index(True)
    assert Storage(str(tmp_path)).read_bytes("claim") == f"racer {winner}".encode()


def _race_create(root: str, i: int) -> bool:
    return Storage(root).create_exclusive("claim", f"racer {i}".encode())


def test_create_exclusive_without_hard_links_still_excludes(tmp_path, monkeypatch):
    import errno

    def no_link(src, dst):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_link)
    store = Storage(str(tmp_path))
    assert store.create_exclusive("x", b"one") is True
    assert store.create_exclusive("x", b"two") is False
    assert store.read_bytes("x") == b"one"
    assert os.listdir(tmp_path) == ["x"]


def test_snapshot_rows_are_converted_once_and_each_caller_gets_its_own(tmp_path):
    store = Storage(str(tmp_path))
    store.write_partition("depth_maps", "c", pa.table({"image_id": ["a"], "status": ["ok"]}))
    first = store.partition_dicts("depth_maps", "c")
    first[0]["status"] = "changed by a caller"
    assert store.partition_dicts("depth_maps", "c") == [{"image_id": "a", "status": "ok"}]
    store.write_partition("depth_maps", "c", pa.table({"image_id": ["b"], "status": ["ok"]}))
    assert store.partition_dicts("depth_maps", "c") == [{"image_id": "b", "status": "ok"}]
    assert store.partition_dicts("depth_maps", "none") is None


def test_large_snapshots_are_not_kept_in_memory(tmp_path, monkeypatch):
    import flux_depth_assets.storage.store as store_module

    store = Storage(str(tmp_path))
    rel = Storage.table_rel("depth_maps", "c")
    store.write_table(rel, pa.table({"image_id": ["a", "b"]}))
    monkeypatch.setattr(store_module, "CACHED_TABLE_MAX_BYTES", 0)
    assert store.read_table(rel) is not store.read_table(rel)  # read afresh each time
    assert store.partition_dicts("depth_maps", "c") == [{"image_id": "a"}, {"image_id": "b"}]
