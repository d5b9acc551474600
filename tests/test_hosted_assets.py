"""The hosted provider through the Dagster assets, against the loopback Eachlabs server."""

from __future__ import annotations

import textwrap
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from PIL import Image

from flux_depth_assets.defs.resources import DepthProviderResource, StorageResource
from flux_depth_assets.defs.runner import materialize_catalog
from flux_depth_assets.fakeapi import running_fake_api
from flux_depth_assets.pipeline.provider_run import predict_in_chunks
from flux_depth_assets.providers.base import DepthPrediction, DepthProvider
from tests import images

KEY = "test-key-ZXQ-7731"


def catalog(tmp_path: Path, provider_yaml: str, n: int = 3) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(n):
        (photos / f"p{i}.jpg").write_bytes(images.jpeg(seed=i))
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True)
    (cfg / "catalogs" / "c.yml").write_text(
        textwrap.dedent(f"""
        catalogs:
          - name: hosted
            source: {{type: local_dir, path: photos}}
            provider: {provider_yaml}
    """)
    )
    return cfg


def run(cfg, root: Path, base_url: str):
    return materialize_catalog(
        "hosted",
        config_dir=cfg,
        instance=dg.DagsterInstance.ephemeral(),
        resources={
            "storage": StorageResource(root=str(root)),
            "depth_provider": DepthProviderResource(
                eachlabs_api_key=KEY, eachlabs_base_url=base_url
            ),
        },
    )


def test_depth_mode_pays_once_and_journals_under_the_run_storage(tmp_path):
    cfg = catalog(tmp_path, "{name: eachlabs, poll_interval_s: 0.05, max_concurrency: 2}")
    root = tmp_path / "root"
    with running_fake_api(latency_s=0.1) as server:
        first = run(cfg, root, server.base_url)
        assert first.success, first.error
        assert server.stats()["creates"] == 3
        meta = first.materialized["depth_maps"]
        assert meta["new"] == 3 and meta["cost_usd"] == pytest.approx(0.15)
        again = run(cfg, root, server.base_url)
        assert again.success and server.stats()["creates"] == 3  # all cached: nothing paid
        assert again.materialized["depth_maps"]["cost_usd"] == 0.0
    rows = pq.read_table(root / "tables/depth_maps/catalog=hosted/part-0.parquet").to_pylist()
    assert all(
        r["provider"] == "eachlabs" and r["model"] == "flux-depth-pro" and r["prediction_id"]
        for r in rows
    )
    # the journal lived in the run's storage root, not in $FLUX_DEPTH_HOME
    assert (root / "journal" / "eachlabs").is_dir()
    assert not (tmp_path / "home" / "journal").exists()


def test_render_mode_stores_renders_and_makes_depth_locally(tmp_path):
    cfg = catalog(
        tmp_path,
        "{name: eachlabs, mode: render, poll_interval_s: 0.05, "
        "params: {prompt: a wooden table, seed: 7, output_format: jpg}}",
        n=2,
    )
    root = tmp_path / "root"
    with running_fake_api(latency_s=0.05) as server:
        outcome = run(cfg, root, server.base_url)
        assert outcome.success, outcome.error
        assert server.stats()["creates"] == 2
    renders = pq.read_table(root / "tables/depth_renders/catalog=hosted/part-0.parquet").to_pylist()
    assert [(r["status"], r["prompt"], r["seed"]) for r in renders] == [
        ("succeeded", "a wooden table", 7)
    ] * 2
    with Image.open(root / renders[0]["render_path"]) as im:
        assert im.format in ("JPEG", "PNG")
    depth = pq.read_table(root / "tables/depth_maps/catalog=hosted/part-0.parquet").to_pylist()
    assert {r["provider"] for r in depth} == {"local"}  # the paid call is the render, not the depth
    assert outcome.materialized["depth_renders"]["cost_usd"] == pytest.approx(0.10)


def test_missing_key_fails_before_any_request(tmp_path, monkeypatch):
    cfg = catalog(tmp_path, "{name: eachlabs}")
    with running_fake_api(latency_s=0.05) as server:
        outcome = materialize_catalog(
            "hosted",
            config_dir=cfg,
            instance=dg.DagsterInstance.ephemeral(),
            resources={"depth_provider": DepthProviderResource(eachlabs_base_url=server.base_url)},
        )
        assert not outcome.success and "EACHLABS_API_KEY" in outcome.error
        assert server.stats()["creates"] == 0


class Recording(DepthProvider):
    name, model = "rec", "rec"

    def __init__(self):
        self.batches: list[int] = []

    def cache_params(self):
        return {}

    def predict_many(self, items, progress=None):
        self.batches.append(len(items))
        return [DepthPrediction(i.image_id) for i in items]


def test_large_runs_are_sent_in_chunks():
    from flux_depth_assets.providers.base import ProviderInput

    provider = Recording()
    items = [ProviderInput(str(i), "s", "k", lambda: None) for i in range(600)]
    got = list(predict_in_chunks(provider, items, None, chunk_size=256))
    assert provider.batches == [256, 256, 88] and [p.image_id for p in got] == [
        str(i) for i in range(600)
    ]
