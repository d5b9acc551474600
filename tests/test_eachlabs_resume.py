"""Kill-and-resume: a run killed with SIGKILL after paying for predictions never pays for them again.

The killed run is this file run as a script (a child process) against the fake server running in
the test process with a long latency; once the server has been polled for every in-flight
prediction (so each id was journaled: the journal is written before the first poll), the child
is killed. The re-run polls the journaled ids and creates only the images never created.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _items_and_provider(base_url: str, root: str, concurrency: int, images: int):
    from flux_depth_assets.storage.store import Storage
    from tests.test_eachlabs_provider import make_items, make_provider

    provider = make_provider(
        base_url,
        Storage(root),
        max_concurrency=concurrency,
        poll_interval_s=0.1,
        prediction_deadline_s=60,
    )
    return provider, make_items(provider, images)


@pytest.mark.slow
def test_a_killed_run_resumes_without_paying_twice(tmp_path):
    from flux_depth_assets.fakeapi import running_fake_api
    from flux_depth_assets.providers.eachlabs import PredictionJournal
    from flux_depth_assets.storage.store import Storage
    from tests.manual_clock import hold_predictions

    root = str(tmp_path / "root")
    images, concurrency = 6, 3
    with running_fake_api(latency_s=4.0) as server:
        clock = hold_predictions(server)  # nothing finishes before the kill, however slow the child
        child = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--base-url",
                server.base_url,
                "--root",
                root,
                "--images",
                str(images),
                "--concurrency",
                str(concurrency),
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while server.stats()["polled_predictions"] < concurrency:
                assert child.poll() is None, child.stdout.read().decode()
                assert time.monotonic() < deadline, "the child never polled its predictions"
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        killed = server.stats()
        assert killed["creates"] == concurrency  # paid for three, results never received
        journal = PredictionJournal(Storage(root))
        journaled = {journal.get(k).prediction_id for k in journal.keys()}  # noqa: SIM118 - not a dict
        assert len(journaled) == concurrency

        provider, items = _items_and_provider(server.base_url, root, concurrency, images)
        lines: list[str] = []

        def progress(line: str) -> None:  # the host moves on as the resumed run polls
            lines.append(line)
            clock.advance(4.0)

        preds = provider.predict_many(items, progress=progress)
        stats = server.stats()

    assert all(p.status == "succeeded" for p in preds), [p.error for p in preds]
    resumed = [p for p in preds if p.extra["resumed"]]
    created = [p for p in preds if p.extra["created"]]
    assert {p.prediction_id for p in resumed} == journaled
    assert len(resumed) == concurrency and len(created) == images - concurrency
    assert all(p.cost_usd == 0 and p.attempts == 0 for p in resumed)
    assert all(p.cost_usd == pytest.approx(0.05) for p in created)
    assert stats["creates"] == images  # each image paid exactly once across both runs
    assert sorted(stats["creates_per_image"].values()) == [1] * images
    assert len(journal.keys()) == images  # until the caller has cached the results
    provider.settle([i.cache_key for i in items])
    assert journal.keys() == []
    assert any("resuming 3 journaled prediction(s)" in line for line in lines)


def main(argv: list[str] | None = None) -> int:
    """The run that gets killed: the provider against the fake server, until done or killed."""
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--concurrency", type=int, default=3)
    args = p.parse_args(argv)
    provider, items = _items_and_provider(args.base_url, args.root, args.concurrency, args.images)
    provider.predict_many(items, progress=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
