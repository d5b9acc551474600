"""The storage root on S3 (moto's server): the demo catalog end to end, tables read back."""

from __future__ import annotations

import io
import shutil
import textwrap

import dagster as dg
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from flux_depth_assets.defs.resources import StorageResource
from flux_depth_assets.defs.runner import materialize_catalog
from flux_depth_assets.storage.store import Storage


def demo_config(tmp_path, demo_dir, source_yaml: str | None = None):
    photos = tmp_path / "photos"
    shutil.copytree(demo_dir, photos)
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True)
    source = source_yaml or "{type: local_dir, path: photos}"
    (cfg / "catalogs" / "c.yml").write_text(
        textwrap.dedent(f"""
        catalogs:
          - name: demo
            source: {source}
    """)
    )
    return cfg


def test_storage_round_trip_and_single_put_writes(s3_env):
    store = Storage(
        f"s3://{s3_env.bucket}/root", {"client_kwargs": {"endpoint_url": s3_env.endpoint}}
    )
    rel = store.write_bytes("catalogs/x/a.bin", b"one")
    store.write_bytes(rel, b"two")  # replace in place
    assert store.read_bytes(rel) == b"two" and store.exists(rel)
    assert store.uri(rel) == f"s3://{s3_env.bucket}/root/catalogs/x/a.bin"
    assert store.list("catalogs/x") == ["catalogs/x/a.bin"]
    keys = [o["Key"] for o in s3_env.client.list_objects_v2(Bucket=s3_env.bucket)["Contents"]]
    assert keys == ["root/catalogs/x/a.bin"]  # no temp objects: one PUT per write
    store.delete(rel)
    assert not store.exists(rel)


def test_create_exclusive_is_one_conditional_put(s3_env):
    store = Storage(f"s3://{s3_env.bucket}/root")
    assert store.create_exclusive("leases/c.json", b"first") is True
    assert store.create_exclusive("leases/c.json", b"second") is False
    assert store.read_bytes("leases/c.json") == b"first"
    keys = [o["Key"] for o in s3_env.client.list_objects_v2(Bucket=s3_env.bucket)["Contents"]]
    assert keys == ["root/leases/c.json"]
    store.delete("leases/c.json")
    assert store.create_exclusive("leases/c.json", b"third") is True  # free again once deleted


def test_create_exclusive_does_not_hide_other_errors(s3_env):
    store = Storage(f"s3://no-such-bucket-{s3_env.bucket}/root")
    with pytest.raises(Exception) as info:
        store.create_exclusive("x", b"y")
    assert "NoSuchBucket" in repr(info.value) or isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("source_on_s3", [False, True], ids=["local-source", "s3-source"])
def test_demo_catalog_materializes_into_an_s3_root(tmp_path, demo_dir, s3_env, source_on_s3):
    source = None
    if source_on_s3:
        for p in demo_dir.iterdir():
            s3_env.put(f"incoming/demo/{p.name}", p.read_bytes())
        source = f"{{type: s3_prefix, bucket: {s3_env.bucket}, prefix: incoming/demo}}"
    cfg = demo_config(tmp_path, demo_dir, source)
    root = f"s3://{s3_env.bucket}/flux"
    outcome = materialize_catalog(
        "demo",
        config_dir=cfg,
        instance=dg.DagsterInstance.ephemeral(),
        resources={"storage": StorageResource(root=root)},
    )
    assert outcome.success, outcome.error
    n = len(list(demo_dir.iterdir()))

    # Same layout as a local root, under the prefix; readable without the pipeline.
    keys = {
        o["Key"]
        for page in s3_env.client.get_paginator("list_objects_v2").paginate(
            Bucket=s3_env.bucket, Prefix="flux/"
        )
        for o in page.get("Contents", [])
    }
    assert "flux/tables/source_images/catalog=demo/part-0.parquet" in keys
    assert "flux/tables/depth_maps/catalog=demo/part-0.parquet" in keys
    assert sum(k.startswith("flux/catalogs/demo/depth_maps/") for k in keys) == n
    assert not [k for k in keys if ".tmp" in k]

    body = s3_env.client.get_object(
        Bucket=s3_env.bucket, Key="flux/tables/source_images/catalog=demo/part-0.parquet"
    )["Body"]
    src = pq.read_table(io.BytesIO(body.read())).to_pylist()
    assert len(src) == n and all(r["status"] == "accepted" for r in src)
    if source_on_s3:
        assert all(r["source_uri"].startswith(f"s3://{s3_env.bucket}/incoming/demo/") for r in src)

    # pyarrow.dataset over the hive layout sees `catalog` as a column.
    store = StorageResource(root=root).get()
    dataset = ds.dataset(
        f"{s3_env.bucket}/flux/tables/depth_maps",
        filesystem=store.fs,
        format="parquet",
        partitioning="hive",
    )
    depth = dataset.to_table().to_pylist()
    assert len(depth) == n and {r["catalog"] for r in depth} == {"demo"}
    assert all(r["status"] == "succeeded" for r in depth)
    png = store.read_bytes(depth[0]["depth_path"])
    assert png.startswith(b"\x89PNG")

    # A second run reads the S3 tables back and pays for nothing.
    again = materialize_catalog(
        "demo",
        config_dir=cfg,
        instance=dg.DagsterInstance.ephemeral(),
        resources={"storage": StorageResource(root=root)},
    )
    assert again.success, again.error
    assert again.materialized["depth_maps"]["new"] == 0
    assert again.materialized["depth_maps"]["cached"] == n


def test_objects_written_or_deleted_by_another_process_are_seen(s3_env):
    """fsspec keeps one S3 filesystem per process; a cached listing must not hide other writers."""
    store = Storage(
        f"s3://{s3_env.bucket}/root", {"client_kwargs": {"endpoint_url": s3_env.endpoint}}
    )
    store.write_bytes("cache/depth/ab/one.json", b"{}")
    assert store.list("cache/depth/ab") == ["cache/depth/ab/one.json"]
    s3_env.put("root/cache/depth/ab/two.json", b"{}")  # another run, elsewhere
    assert store.exists("cache/depth/ab/two.json")
    assert store.list("cache/depth/ab") == ["cache/depth/ab/one.json", "cache/depth/ab/two.json"]
    s3_env.delete("root/cache/depth/ab/one.json")
    assert not store.exists("cache/depth/ab/one.json")


def test_files_under_lists_an_s3_prefix_as_relative_paths(s3_env):
    store = Storage(
        f"s3://{s3_env.bucket}/root", {"client_kwargs": {"endpoint_url": s3_env.endpoint}}
    )
    store.write_bytes("catalogs/c/normal_maps/a.png", b"1")
    store.write_bytes("catalogs/c/parallax_sprites/a/manifest.json", b"{}")
    assert store.files_under("catalogs/c/parallax_sprites") == {
        "catalogs/c/parallax_sprites/a/manifest.json"
    }
    assert store.files_under("catalogs/none") == set()
