"""An unchanged re-run only spot-checks outputs verified when they were made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flux_depth_assets.defs.assets.derived.checks import CACHED_SPOT_CHECK, CHECK_SAMPLE, _sample


def _rows(status: str, n: int, start: int = 0) -> list[dict]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {
            "image_id": f"{status}{i}",
            "status": status,
            "materialized_at": t0 + timedelta(seconds=start + i),
        }
        for i in range(n)
    ]


def test_an_unchanged_run_checks_only_a_constant_few_cached_outputs():
    sample = _sample(_rows("cached", 2000))
    assert len(sample) == CACHED_SPOT_CHECK
    assert [r["image_id"] for r in sample] == ["cached1999", "cached1998"][:CACHED_SPOT_CHECK]


def test_new_outputs_are_all_checked_up_to_the_sample_then_a_spot_check_of_cached_ones():
    rows = _rows("cached", 500) + _rows("succeeded", 10, start=1000) + _rows("failed", 3)
    sample = _sample(rows)
    assert [r["status"] for r in sample] == ["succeeded"] * 10 + ["cached"] * CACHED_SPOT_CHECK
    many = _sample(_rows("succeeded", 100) + _rows("cached", 5))
    assert len(many) == CHECK_SAMPLE + CACHED_SPOT_CHECK
    assert all(r["status"] == "succeeded" for r in many[:CHECK_SAMPLE])
