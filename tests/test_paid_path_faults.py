"""Never pay twice, for real: the paid path under SIGKILL, a storage root that turns read-only or
full, two concurrent CLI runs, a key with a newline and a host that answers with renders.

Every case runs against the loopback fake host and asserts from ITS counters that no image was
created twice and that the cost recorded in the lineage tables equals what it charged, to the cent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.compute as pc
import pytest

from flux_depth_assets.defs.resources import DepthProviderResource, StorageResource
from flux_depth_assets.defs.runner import RunOutcome, materialize_catalog
from flux_depth_assets.fakeapi import running_fake_api
from flux_depth_assets.lineage import queries
from flux_depth_assets.providers.eachlabs.journal import PredictionJournal
from flux_depth_assets.storage.lease import WAIT_ENV
from flux_depth_assets.storage.store import Storage
from tests import images
from tests.paid_driver import CATALOG, KEY, PHASES

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "tests" / "paid_driver.py"
CLI = REPO / ".venv" / "bin" / "flux-depth"


def make_catalog(tmp_path: Path, n: int, provider: str = "") -> Path:
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    for i in range(n):
        (photos / f"p{i}.jpg").write_bytes(images.jpeg(seed=i))
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True, exist_ok=True)
    provider = provider or "{name: eachlabs, poll_interval_s: 0.05, max_concurrency: 1}"
    (cfg / "catalogs" / "c.yml").write_text(
        textwrap.dedent(f"""
        catalogs:
          - name: {CATALOG}
            source: {{type: local_dir, path: {photos}}}
            provider: {provider}
            max_failure_ratio: 1.0
    """)
    )
    return cfg


def run(
    cfg: Path, root: Path, base_url: str, key: str = KEY, assets: list[str] | None = None
) -> RunOutcome:
    return materialize_catalog(
        CATALOG,
        config_dir=cfg,
        instance=dg.DagsterInstance.ephemeral(),
        assets=assets,
        resources={
            "storage": StorageResource(root=str(root)),
            "depth_provider": DepthProviderResource(
                eachlabs_api_key=key, eachlabs_base_url=base_url
            ),
        },
    )


def recorded(root: Path) -> dict[str, Any]:
    """What the lineage tables say was paid: per table sums, and provider_calls rows."""
    store = Storage(str(root))
    calls = queries.read(store, "provider_calls", CATALOG)
    mats = queries.read(store, "materializations", CATALOG)
    return {
        "calls_usd": round(float(pc.sum(calls["cost_usd"]).as_py() or 0.0), 2),
        "mats_usd": round(float(pc.sum(mats["cost_usd"]).as_py() or 0.0), 2),
        "uncertain_usd": round(float(pc.sum(calls["uncertain_cost_usd"]).as_py() or 0.0), 2),
        "rows": calls.to_pylist(),
    }


def assert_bill_matches(stats: dict[str, Any], root: Path, images_n: int) -> dict[str, Any]:
    """No image created twice, and recorded cost == charged cost, in both lineage tables."""
    per_image = stats["creates_per_image"]
    assert sorted(per_image.values()) == [1] * len(per_image), per_image
    assert len(per_image) <= images_n
    rec = recorded(root)
    charged = round(stats["charged_usd"], 2)
    assert rec["calls_usd"] == charged, (rec["calls_usd"], charged)
    assert rec["mats_usd"] == charged, (rec["mats_usd"], charged)
    print(
        f"\nFAULT-MATRIX {os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]}: "
        f"images {len(per_image)}, creates {stats['creates']}, max creates/image "
        f"{max(per_image.values(), default=0)}, recorded ${rec['calls_usd']:.2f} "
        f"(materializations ${rec['mats_usd']:.2f}), charged ${charged:.2f}, "
        f"uncertain ${rec['uncertain_usd']:.2f}"
    )
    return rec


def wait_for(
    predicate, what: str, proc: subprocess.Popen | None = None, timeout_s: float = 120.0
) -> None:
    """Wait on an event (a file, a counter), checking the child is still alive."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the child exited ({proc.returncode}) before {what}: {out}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def journal_states(root: Path) -> dict[str, str]:
    journal = PredictionJournal(Storage(str(root)))
    entries = {k: journal.get(k) for k in journal.keys()}  # noqa: SIM118 - not a dict
    return {k: e.state for k, e in entries.items() if e is not None}


# --------------------------------------------------------------------------- SIGKILL per phase


@pytest.mark.slow
@pytest.mark.parametrize("phase", PHASES)
def test_sigkill_at_each_phase_boundary_never_pays_twice(tmp_path, monkeypatch, phase):
    n = 3
    cfg, root = make_catalog(tmp_path, n), tmp_path / "root"
    marker = tmp_path / "paused"
    with running_fake_api(latency_s=0.2) as server:
        child = subprocess.Popen(
            [
                sys.executable,
                str(DRIVER),
                "--config-dir",
                str(cfg),
                "--root",
                str(root),
                "--base-url",
                server.base_url,
                "--pause-at",
                phase,
                "--nth",
                "2",
                "--marker",
                str(marker),
            ],
            cwd=REPO,
            # a lease that would block for 10 minutes: the rerun below must see the killed
            # process gone and take the lease over at once (it waits 0 s)
            env={**os.environ, "PYTHONPATH": str(REPO), "FLUX_DEPTH_LEASE_TTL_S": "600"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for(marker.exists, f"the driver to pause at {phase}", child)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        killed = server.stats()
        assert killed["creates"] == 2 if phase != "before_cache" else killed["creates"] == n
        assert journal_states(root)  # the paid predictions are remembered

        monkeypatch.setenv(WAIT_ENV, "0")
        again = run(cfg, root, server.base_url)
        stats = server.stats()
    assert again.success, again.error
    assert stats["creates"] == n
    rec = assert_bill_matches(stats, root, n)
    assert journal_states(root) == {}  # settled once cached
    resumed = [r for r in rec["rows"] if r["resumed"]]
    assert resumed and all(r["prediction_id"] for r in resumed)
    if phase == "before_cache":  # the killed run had recorded its bill before caching
        assert all(r["cost_usd"] == 0 for r in resumed)
    meta = again.materialized["depth_maps"]
    assert meta["new"] + meta["cached"] == n


# --------------------------------------------------------------------------- deadlines, faults


def test_deadline_failure_is_recorded_once_and_resumed_for_free(tmp_path):
    cfg = make_catalog(
        tmp_path,
        2,
        "{name: eachlabs, poll_interval_s: 0.05, prediction_deadline_s: 0.3, max_concurrency: 2}",
    )
    root = tmp_path / "root"
    with running_fake_api(latency_s=1.5) as server:
        first = run(cfg, root, server.base_url)
        assert first.materialized["depth_maps"]["failed"] == 2  # both past the deadline
        assert recorded(root)["calls_usd"] == 0.10  # paid, though not finished
        yml = cfg / "catalogs" / "c.yml"
        yml.write_text(
            yml.read_text().replace("prediction_deadline_s: 0.3", "prediction_deadline_s: 30")
        )
        second = run(cfg, root, server.base_url)
        stats = server.stats()
    assert second.success, second.error
    rec = assert_bill_matches(stats, root, 2)
    resumed = [r for r in rec["rows"] if r["resumed"]]
    assert len(resumed) == 2 and all(r["cost_usd"] == 0 for r in resumed)


def test_no_retries_under_host_faults_records_what_was_charged(tmp_path):
    cfg = make_catalog(
        tmp_path, 8, "{name: eachlabs, poll_interval_s: 0.05, max_retries: 0, max_concurrency: 4}"
    )
    root = tmp_path / "root"
    with running_fake_api(latency_s=0.1, error_rate=0.25, seed=3) as server:
        for _ in range(8):
            outcome = run(cfg, root, server.base_url)
            if outcome.success and outcome.materialized["depth_maps"]["failed"] == 0:
                break
        stats = server.stats()
    assert stats["injected_errors"] > 0
    assert len(stats["creates_per_image"]) == 8
    assert_bill_matches(stats, root, 8)


# --------------------------------------------------------------------------- storage


@pytest.fixture
def tmpfs_root(tmp_path) -> Iterator[Path]:
    """A 6 MB tmpfs as the storage root (skips where mounting is not permitted)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def remount(mnt: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mnt)], check=True)


def fill(mnt: Path) -> Path:
    """Fill the filesystem to the last byte (unbuffered writes); returns the filler file."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_storage_unwritable_before_depth_maps_sends_nothing(tmp_path, tmpfs_root, fault):
    cfg, root = make_catalog(tmp_path, 4), tmpfs_root / "root"
    with running_fake_api(latency_s=0.05) as server:
        assert run(cfg, root, server.base_url, assets=["source_images"]).success
        filler = None
        if fault == "read-only":
            remount(tmpfs_root, "ro")
        else:
            filler = fill(tmpfs_root)
        try:
            blocked = run(cfg, root, server.base_url, assets=["depth_maps"])
        finally:
            if filler is not None:
                filler.unlink()
            else:
                remount(tmpfs_root, "rw")
        assert not blocked.success and server.stats()["creates"] == 0
        assert "\n" not in blocked.error and "nothing was sent" in blocked.error
        again = run(cfg, root, server.base_url, assets=["depth_maps"])
        stats = server.stats()
    assert again.success, again.error
    assert stats["creates"] == 4
    assert_bill_matches(stats, root, 4)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_storage_lost_mid_run_stops_creating_and_the_rerun_pays_nothing_twice(
    tmp_path, tmpfs_root, fault
):
    n = 6
    cfg = make_catalog(tmp_path, n, "{name: eachlabs, poll_interval_s: 0.05, max_concurrency: 2}")
    root = tmpfs_root / "root"
    # a read-only root keeps the run from removing its lease: let it expire quickly
    env = {
        **os.environ,
        "FLUX_DEPTH_HOME": str(root),
        "EACHLABS_API_KEY": KEY,
        "FLUX_DEPTH_LEASE_TTL_S": "2",
    }
    env.pop("DAGSTER_HOME", None)
    with running_fake_api(latency_s=1.5) as server:
        env["EACHLABS_BASE_URL"] = server.base_url
        child = subprocess.Popen(
            [
                str(CLI),
                "materialize",
                "--catalog",
                CATALOG,
                "--config-dir",
                str(cfg),
                "--assets",
                "source_images,depth_maps",
                "--quiet",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        filler = None
        try:
            wait_for(
                lambda: list(journal_states(root).values()).count("created") == 2,
                "two journaled creates",
                child,
            )
            if fault == "read-only":
                remount(tmpfs_root, "ro")
            else:
                filler = fill(tmpfs_root)
            out, err = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
            if filler is not None:
                filler.unlink()
            elif fault == "read-only":
                remount(tmpfs_root, "rw")
        assert child.returncode == 1, out + err
        assert server.stats()["creates"] == 2  # stopped creating at once
        assert "Traceback" not in err
        error_lines = [line for line in err.splitlines() if line.startswith("flux-depth: error")]
        assert len(error_lines) == 1 and "re-running is safe" in error_lines[0], err
        again = run(cfg, root, server.base_url)
        stats = server.stats()
    assert again.success, again.error
    assert stats["creates"] == n
    assert_bill_matches(stats, root, n)
    assert journal_states(root) == {}


# --------------------------------------------------------------------------- concurrent runs


@pytest.mark.slow
def test_two_concurrent_cli_runs_pay_each_image_once(tmp_path):
    n = 4
    cfg = make_catalog(tmp_path, n, "{name: eachlabs, poll_interval_s: 0.05, max_concurrency: 2}")
    root = tmp_path / "root"
    home = tmp_path / "dagster_home"  # fresh: the partition-registration race is on
    home.mkdir()
    env = {
        **os.environ,
        "FLUX_DEPTH_HOME": str(root),
        "EACHLABS_API_KEY": KEY,
        "DAGSTER_HOME": str(home),
        "FLUX_DEPTH_LEASE_WAIT_S": "120",
    }
    with running_fake_api(latency_s=0.5) as server:
        env["EACHLABS_BASE_URL"] = server.base_url
        cmd = [str(CLI), "materialize", "--catalog", CATALOG, "--config-dir", str(cfg), "--quiet"]
        procs = [
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        results = [p.communicate(timeout=300) for p in procs]
        stats = server.stats()
    for proc, (out, err) in zip(procs, results):
        assert "Traceback" not in err and "IntegrityError" not in err, err
        if proc.returncode != 0:  # refused: one line
            assert len([ln for ln in err.splitlines() if ln.startswith("flux-depth:")]) == 1
    assert any(p.returncode == 0 for p in procs), results
    assert stats["creates"] == n
    assert_bill_matches(stats, root, n)


# --------------------------------------------------------------------------- keys


def test_a_key_with_a_newline_is_refused_before_any_request_and_never_stored(tmp_path):
    key = "sk-live-7f3a9c2e\nb81d44a0e5c6"
    cfg, root = make_catalog(tmp_path, 2), tmp_path / "root"
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "FLUX_DEPTH_HOME": str(root),
        "EACHLABS_API_KEY": key,
        "DAGSTER_HOME": str(home),
    }
    with running_fake_api(latency_s=0.05) as server:
        env["EACHLABS_BASE_URL"] = server.base_url
        done = subprocess.run(
            [str(CLI), "materialize", "--catalog", CATALOG, "--config-dir", str(cfg)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        stats = server.stats()
    assert done.returncode == 1 and stats["requests"] == 0
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("flux-depth: error")]
    assert len(errors) == 1 and "EACHLABS_API_KEY" in errors[0], done.stderr
    from flux_depth_assets.redaction import renderings

    forms = [f.encode() for f in renderings(key)]
    texts = [done.stdout.encode(), done.stderr.encode()]
    texts += [p.read_bytes() for d in (root, home) for p in d.rglob("*") if p.is_file()]
    for blob in texts:
        assert not any(f in blob for f in forms)


# --------------------------------------------------------------------------- the host's output


def test_a_bfl_like_host_in_depth_mode_costs_at_most_three_per_run(tmp_path):
    n = 10
    cfg = make_catalog(tmp_path, n, "{name: eachlabs, poll_interval_s: 0.05, max_concurrency: 4}")
    root = tmp_path / "root"
    with running_fake_api(latency_s=0.1, bfl_like=True) as server:
        first = run(cfg, root, server.base_url)
        after_first = server.stats()["creates"]
        second = run(cfg, root, server.base_url)
        stats = server.stats()
    assert not first.success and not second.success
    assert after_first == 3 and stats["creates"] == 6
    assert "mode: render" in first.error and "\n" not in first.error
    assert "not depth maps" in first.error or "colour" in first.error
    assert_bill_matches(stats, root, n)
    assert not (root / "catalogs" / CATALOG / "depth_maps").exists()
    assert not (root / "cache" / "depth").exists()
    assert journal_states(root) == {}  # paid, recorded, and not worth resuming


def test_bfl_like_switch_on_the_fake_cli(tmp_path):
    from flux_depth_assets.fakeapi.runner import build_parser

    assert build_parser().parse_args(["--bfl-like"]).bfl_like
    assert not build_parser().parse_args([]).bfl_like


def test_costs_lists_uncertain_attempts(tmp_path, capsys):
    from datetime import date, datetime

    from flux_depth_assets.cli import main
    from flux_depth_assets.lineage.writer import write_rows

    store = Storage(str(tmp_path / "root"))
    now = datetime.now(UTC)
    write_rows(
        store,
        "provider_calls",
        catalog=CATALOG,
        day=date.today(),
        run_id="r1",
        asset="depth_maps",
        rows=[
            {
                "run_id": "r1",
                "asset": "depth_maps",
                "image_id": "a",
                "status": "failed",
                "cached": False,
                "cost_usd": 0.0,
                "uncertain_attempts": 1,
                "uncertain_cost_usd": 0.05,
                "started_at": now,
                "finished_at": now,
            },
            {
                "run_id": "r1",
                "asset": "depth_maps",
                "image_id": "b",
                "status": "succeeded",
                "cached": False,
                "cost_usd": 0.05,
                "started_at": now,
                "finished_at": now,
            },
        ],
    )
    assert main(["costs", "--uncertain", "--root", str(tmp_path / "root"), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["image_id"] for r in rows] == ["a"] and rows[0]["uncertain_cost_usd"] == 0.05


def test_paid_run_on_an_s3_root_keeps_journal_and_lease_there_and_settles(tmp_path, s3_env):
    n = 3
    cfg = make_catalog(tmp_path, n, "{name: eachlabs, poll_interval_s: 0.05, max_concurrency: 2}")
    root = f"s3://{s3_env.bucket}/flux"
    with running_fake_api(latency_s=0.1) as server:
        outcomes = [
            materialize_catalog(
                CATALOG,
                config_dir=cfg,
                instance=dg.DagsterInstance.ephemeral(),
                resources={
                    "storage": StorageResource(root=root),
                    "depth_provider": DepthProviderResource(
                        eachlabs_api_key=KEY, eachlabs_base_url=server.base_url
                    ),
                },
            )
            for _ in range(2)
        ]
        stats = server.stats()
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    assert stats["creates"] == n and sorted(stats["creates_per_image"].values()) == [1] * n
    store = StorageResource(root=root).get()
    calls = queries.read(store, "provider_calls", CATALOG)
    assert round(float(pc.sum(calls["cost_usd"]).as_py()), 2) == round(stats["charged_usd"], 2)
    assert PredictionJournal(store).keys() == [] and store.list(f"leases/{CATALOG}") == []
