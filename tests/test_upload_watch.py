"""The upload sensor's plain logic (pipeline/upload_watch.py): listing, cursor and tick decision."""

from __future__ import annotations

import json
import random

import pytest

from flux_depth_assets.config.models import LocalDirSource, UploadSensorConfig
from flux_depth_assets.pipeline.upload_watch import (
    EDGE_CAP,
    PENDING_CAP,
    Fingerprint,
    UploadCursor,
    evaluate_tick,
    walk_local_dir,
)
from flux_depth_assets.sources import SourceError, list_objects

NOW = 1_800_000_000.0
SETTINGS = UploadSensorConfig(settle_seconds=30, first_tick_max_files=1000)


def fps(n: int, start: int = 0, mtime: float = NOW - 10**6, size: int = 100) -> list[Fingerprint]:
    return [Fingerprint(f"img_{i:06d}.jpg", size, mtime + i) for i in range(start, start + n)]


def tick(listing, prev=None, now=NOW, settings=SETTINGS):
    return evaluate_tick("shop", listing, prev, settings, now)


# --------------------------------------------------------------------------- pure tick logic


def test_first_tick_requests_a_run_then_nothing_new_skips():
    listing = fps(10)
    first = tick(listing)
    assert first.run_key and first.run_key.startswith("upload:shop:1:") and first.new == 10
    again = tick(listing, first.cursor)
    assert again.run_key is None and again.skip_reason.startswith("no new, changed or deleted")
    assert again.cursor == first.cursor


def test_some_new_objects_request_one_new_run_with_a_new_key():
    first = tick(fps(10))
    second = tick(fps(13), first.cursor)
    assert second.run_key and second.run_key != first.run_key and second.new == 3
    assert not second.other_changes and second.cursor.gen == 2


def test_all_new_replacing_every_object():
    first = tick(fps(10))
    replaced = tick(fps(10, start=100), first.cursor)
    assert replaced.run_key and replaced.new == 10 and replaced.other_changes  # old ones went away


def test_a_still_uploading_object_waits_for_settle_seconds():
    first = tick(fps(5))
    uploading = fps(5) + [Fingerprint("big.jpg", 1000, NOW - 2)]
    wait = tick(uploading, first.cursor)
    assert wait.run_key is None and "waiting for uploads to settle" in wait.skip_reason
    assert wait.settling == 1 and wait.cursor.n == first.cursor.n  # state not advanced
    grown = fps(5) + [Fingerprint("big.jpg", 5000, NOW - 2)]
    still = tick(grown, wait.cursor, now=NOW + 60)  # old enough now, but bigger than last tick
    assert still.run_key is None and still.settling == 1
    done = tick(grown, still.cursor, now=NOW + 90)
    assert done.run_key and done.new == 1


def test_an_object_still_growing_with_an_old_mtime_is_not_taken():
    first = tick(fps(5))
    young = tick(fps(5) + [Fingerprint("slow.jpg", 10, NOW - 1)], first.cursor)
    assert young.cursor.pending  # its size is remembered
    grew = tick(fps(5) + [Fingerprint("slow.jpg", 20, NOW - 600)], young.cursor, now=NOW + 5)
    assert grew.run_key is None and grew.settling == 1
    stable = tick(fps(5) + [Fingerprint("slow.jpg", 20, NOW - 600)], grew.cursor, now=NOW + 10)
    assert stable.run_key and stable.new == 1


def test_settling_wait_is_bounded_by_max_settle_wait_seconds():
    settings = UploadSensorConfig(settle_seconds=30, max_settle_wait_seconds=120)
    first = tick(fps(5), settings=settings)
    busy = lambda t: fps(6) + [Fingerprint(f"live{t}.jpg", 1, t - 1)]  # noqa: E731
    w1 = tick(busy(NOW), first.cursor, now=NOW, settings=settings)
    assert w1.run_key is None
    w2 = tick(busy(NOW + 60), w1.cursor, now=NOW + 60, settings=settings)
    assert w2.run_key is None
    go = tick(busy(NOW + 121), w2.cursor, now=NOW + 121, settings=settings)
    assert go.run_key and go.new >= 1 and go.settling == 1


def test_deleted_objects_request_a_refresh_unless_ignored():
    first = tick(fps(10))
    deleted = tick(fps(8), first.cursor)
    assert deleted.run_key and deleted.new == 0 and deleted.other_changes
    ignore = UploadSensorConfig(on_delete="ignore")
    skipped = tick(fps(8), first.cursor, settings=ignore)
    assert skipped.run_key is None and "2 objects deleted" in skipped.skip_reason
    assert tick(fps(8), skipped.cursor, settings=ignore).skip_reason.startswith("no new")


def test_a_late_object_with_an_old_mtime_is_still_detected():
    first = tick(fps(10))
    moved_in = fps(10) + [Fingerprint("archive/old.jpg", 77, NOW - 100 * 86400)]  # `mv` keeps mtime
    late = tick(moved_in, first.cursor)
    assert late.run_key and late.new == 0 and late.other_changes


def test_in_place_change_with_the_same_mtime_is_detected_by_size_or_etag():
    first = tick(fps(3))
    changed = fps(3)
    changed[1] = Fingerprint(changed[1].key, changed[1].size, changed[1].mtime, etag="v2")
    assert tick(changed, first.cursor).run_key


def test_a_new_object_at_exactly_the_high_water_mark_counts_as_new():
    same = NOW - 100
    first = tick([Fingerprint("a.jpg", 1, same)])
    second = tick([Fingerprint("a.jpg", 1, same), Fingerprint("b.jpg", 1, same)], first.cursor)
    assert second.run_key and second.new == 1 and not second.other_changes


def test_listing_order_never_changes_the_cursor_or_the_run_key():
    listing = fps(500) + [
        Fingerprint("same-a.jpg", 1, NOW - 50),
        Fingerprint("same-b.jpg", 2, NOW - 50),
    ]
    base = tick(listing)
    for seed in range(5):
        shuffled = listing[:]
        random.Random(seed).shuffle(shuffled)
        other = tick(shuffled)
        assert other.cursor.to_json() == base.cursor.to_json() and other.run_key == base.run_key
        nxt = shuffled + fps(3, start=9000)
        assert (
            tick(nxt, other.cursor).run_key
            == tick(sorted(nxt, key=lambda f: f.key), base.cursor).run_key
        )


def test_a_retried_tick_asks_for_the_same_run_key():
    first = tick(fps(10))
    a = tick(fps(12), first.cursor)
    b = tick(fps(12), UploadCursor.from_json(first.cursor.to_json()))  # cursor not committed
    assert a.run_key == b.run_key


def test_state_returning_to_an_earlier_listing_gets_a_fresh_key():
    k1 = tick(fps(10))
    k2 = tick(fps(11), k1.cursor)
    k3 = tick(fps(10), k2.cursor)  # the new file was deleted again
    k4 = tick(fps(11), k3.cursor)  # and re-uploaded unchanged
    keys = [k.run_key for k in (k1, k2, k3, k4)]
    assert all(keys) and len(set(keys)) == 4


def test_first_tick_over_a_large_catalog_records_a_baseline_only():
    settings = UploadSensorConfig(first_tick_max_files=100)
    first = tick(fps(150), settings=settings)
    assert first.run_key is None and "first_tick_max_files=100" in first.skip_reason
    assert "backfill catalog 'shop'" in first.skip_reason
    later = tick(fps(152), first.cursor, settings=settings)
    assert later.run_key and later.new == 2


def test_first_tick_waits_for_uploads_then_runs():
    listing = fps(3) + [Fingerprint("up.jpg", 5, NOW - 1)]
    first = tick(listing)
    assert first.run_key is None and first.skip_reason.startswith("first tick: waiting")
    assert first.cursor.n == -1
    run = tick(listing, UploadCursor.from_json(first.cursor.to_json()), now=NOW + 60)
    assert run.run_key and run.new == 4


def test_empty_source_first_tick_then_uploads():
    empty = tick([])
    assert empty.run_key is None and "no objects" in empty.skip_reason
    assert tick(fps(2), empty.cursor).new == 2


def test_cursor_is_compact_json_and_bounded_for_100k_objects():
    listing = fps(100_000)
    first = tick(listing, settings=UploadSensorConfig(first_tick_max_files=10))
    text = first.cursor.to_json()
    assert json.loads(text)["n"] == 100_000 and len(text) < 300
    # Worst cases: many objects sharing the newest mtime, many objects still uploading.
    flat = [Fingerprint(f"k{i}", 1, NOW - 100) for i in range(5000)]
    uploading = [Fingerprint(f"u{i}", 1, NOW - 1) for i in range(5000)]
    worst = tick(flat + uploading).cursor
    assert len(worst.edge) == EDGE_CAP and len(worst.pending) == PENDING_CAP
    assert len(worst.to_json()) < 10_000


@pytest.mark.parametrize("text", ["", "not json", '{"v": 99}', '{"v": 1, "n": "x"}', "[]"])
def test_unreadable_cursors_mean_first_tick(text):
    assert UploadCursor.from_json(text) is None


def test_cursor_json_round_trip():
    cur = tick(fps(3) + [Fingerprint("u.jpg", 1, NOW - 1)], tick(fps(3)).cursor).cursor
    assert UploadCursor.from_json(cur.to_json()) == cur


def test_new_objects_are_counted_exactly_when_thousands_share_the_mark():
    same = NOW - 5000
    crowd = [Fingerprint(f"c{i}.jpg", 1, same) for i in range(3000)]  # e.g. one bulk `cp -p`
    first = tick(crowd)
    assert first.cursor.hn == 3000 and len(first.cursor.edge) == EDGE_CAP
    more = tick(crowd + [Fingerprint(f"n{i}.jpg", 1, same) for i in range(7)], first.cursor)
    assert more.run_key and more.new == 7 and not more.other_changes
    newer = tick(crowd + [Fingerprint("later.jpg", 1, same + 1)], first.cursor)
    assert newer.new == 1 and not newer.other_changes
    fewer = tick(crowd[1:], first.cursor)
    assert fewer.run_key and fewer.new == 0 and fewer.other_changes


def test_walk_agrees_with_the_local_dir_listing(tmp_path):
    root = tmp_path / "photos"
    (root / "sub" / ".hidden_dir").mkdir(parents=True)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"o")
    for rel in ["a.jpg", "B.PNG", "sub/c.webp", "sub/.d.jpg", "sub/.hidden_dir/e.jpg", "f.gif"]:
        (root / rel).write_bytes(b"1")
    (root / "link_in.jpg").symlink_to(root / "a.jpg")
    (root / "link_out.jpg").symlink_to(outside)
    (root / "dangling.jpg").symlink_to(root / "nope.jpg")
    for recursive in (True, False):
        src = LocalDirSource(path=str(root), recursive=recursive)
        walked = sorted((f.key, f.size) for f in walk_local_dir(src))
        listed = sorted((o.key, o.size) for o in list_objects(src) if o.rejected is None)
        assert walked == listed and walked
    with pytest.raises(SourceError, match="does not exist"):
        walk_local_dir(LocalDirSource(path=str(tmp_path / "missing")))
