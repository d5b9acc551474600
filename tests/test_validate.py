"""`validate` catches everything `materialize` would refuse, and `materialize` writes nothing then.

Each broken config is fed to both: `flux-depth validate` must name every problem (file:line,
catalog, field) in one pass, and `materialize_catalog` must refuse with the same errors before
it touches the storage root or the Dagster instance.
"""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from flux_depth_assets.cli import main
from flux_depth_assets.config import ConfigErrors, load_project
from flux_depth_assets.config.preflight import source_problem
from flux_depth_assets.defs.runner import materialize_catalog
from tests import images


def config(
    tmp_path: Path,
    catalogs: str,
    models: str | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    cfg = tmp_path / "cfg"
    (cfg / "catalogs").mkdir(parents=True)
    (cfg / "catalogs" / "main.yml").write_text(textwrap.dedent(catalogs))
    for name, text in (extra_files or {}).items():
        (cfg / "catalogs" / name).write_text(textwrap.dedent(text))
    if models:
        (cfg / "models").mkdir()
        (cfg / "models" / "m.yml").write_text(textwrap.dedent(models))
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    (photos / "a.jpg").write_bytes(images.jpeg())
    return cfg


def validate(cfg: Path, capsys) -> tuple[int, list[str]]:
    code = main(["validate", "--config-dir", str(cfg)])
    err = capsys.readouterr().err
    return code, [line.strip() for line in err.splitlines()[1:]]


def refused(cfg: Path, tmp_path: Path, catalog: str = "shop") -> list[str]:
    instance = dg.DagsterInstance.ephemeral()
    with pytest.raises(ConfigErrors) as err:
        materialize_catalog(catalog, config_dir=cfg, instance=instance)
    assert not (tmp_path / "home").exists()  # nothing written to storage
    assert instance.get_runs() == [] and not instance.get_dynamic_partitions("catalog")
    return [str(e) for e in err.value.errors]


BROKEN = {
    "two typos in one catalog, both named": (
        """
        catalogs:
          - name: shop
            source: {type: local_dir, path: photos}
            max_failure_ratoi: 0.5
            budget_usd_per_rn: 3
        """,
        None,
        {},
        [
            "main.yml:5: catalog 'shop': field 'max_failure_ratoi': unknown field",
            "main.yml:6: catalog 'shop': field 'budget_usd_per_rn': unknown field",
        ],
    ),
    "a typo inside a per-catalog models override, worded like any field": (
        """
        catalogs:
          - name: shop
            source: {type: local_dir, path: photos}
            models:
              depth_maps:
                pth: 1
              normal_maps: {strength: -1}
        """,
        None,
        {},
        [
            "main.yml:7: catalog 'shop': field 'models.depth_maps.pth': unknown field",
            (
                "main.yml:8: catalog 'shop': field 'models.normal_maps.strength': Input should be "
                "greater than 0"
            ),
        ],
    ),
    "a missing source folder": (
        """
        catalogs:
          - name: shop
            source: {type: local_dir, path: no-such-folder}
        """,
        None,
        {},
        ["main.yml:4: catalog 'shop': field 'source.path': source folder"],
    ),
    "a duplicate key (YAML keeps the last one silently)": (
        """
        catalogs:
          - name: shop
            source: {type: local_dir, path: photos}
            max_failure_ratio: 0.1
            max_failure_ratio: 0.9
        """,
        None,
        {},
        [
            (
                "main.yml:6: catalog 'shop': field 'max_failure_ratio': duplicate key "
                "'max_failure_ratio' (first at line 5"
            )
        ],
    ),
    "errors in three files at once": (
        """
        catalogs:
          - name: shop
            source: {type: local_dir, path: photos}
            shedule: "@daily"
        """,
        """
        models:
          normal_maps: {convention: sideways}
        """,
        {
            "other.yml": """
        catalogs:
          - name: other
            source: {type: local_dir, path: photos}
            provider: {name: eachlabs, params: {steps: 5}}
        """
        },
        [
            "m.yml:3: field 'models.normal_maps.convention': Input should be 'opengl' or 'directx'",
            "main.yml:5: catalog 'shop': field 'shedule': unknown field",
            (
                "other.yml:5: catalog 'other': field 'provider.params.steps': Input should be "
                "greater than or equal to 15"
            ),
        ],
    ),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_validate_reports_every_error_that_materialize_refuses(name, tmp_path, capsys):
    catalogs, models, extra, expected = BROKEN[name]
    cfg = config(tmp_path, catalogs, models, extra)
    code, lines = validate(cfg, capsys)
    assert code == 2
    assert len(lines) == len(expected), lines
    for want in expected:
        assert any(want in line for line in lines), (want, lines)
    assert not any("more error" in line for line in lines)
    # materialize refuses with the same errors, before writing anything
    catalog = "other" if "other.yml" in extra and "shop" not in catalogs else "shop"
    assert sorted(refused(cfg, tmp_path, catalog)) == sorted(lines)


def test_manifest_must_exist_and_have_its_url_column(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows([["link"], ["http://example.invalid/a.jpg"]])
    cfg = config(
        tmp_path,
        """
        catalogs:
          - name: shop
            source: {type: url_manifest, path: m.csv}
          - name: gone
            source: {type: url_manifest, path: missing.csv}
        """,
    )
    code, lines = validate(cfg, capsys)
    assert code == 2 and len(lines) == 2, lines
    assert "main.yml:4: catalog 'shop': field 'source.path'" in lines[0]
    assert "has no 'url' column (columns: link)" in lines[0]
    assert "main.yml:6: catalog 'gone'" in lines[1] and "does not exist" in lines[1]
    assert refused(cfg, tmp_path) == [lines[0]]  # materialize checks the catalog it runs


def test_s3_bucket_reachability_is_checked_when_credentials_exist(tmp_path, capsys, s3_env):
    cfg = config(
        tmp_path,
        f"""
        catalogs:
          - name: shop
            source: {{type: s3_prefix, bucket: {s3_env.bucket}, prefix: in}}
          - name: nobucket
            source: {{type: s3_prefix, bucket: no-such-bucket-here, prefix: in}}
        """,
    )
    code, lines = validate(cfg, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert (
        "main.yml:6: catalog 'nobucket': field 'source.bucket': S3 bucket "
        "'no-such-bucket-here' does not exist" in lines[0]
    )
    assert refused(cfg, tmp_path, "nobucket") == lines


def test_a_good_config_validates_and_its_source_is_readable(tmp_path, capsys):
    cfg = config(
        tmp_path,
        """
        catalogs:
          - name: shop
            source: {type: local_dir, path: photos}
        """,
    )
    assert main(["validate", "--config-dir", str(cfg)]) == 0
    assert "OK: 1 catalog(s)" in capsys.readouterr().out
    assert source_problem(load_project(cfg).catalog("shop")) is None


def test_a_source_inside_the_storage_root_is_refused_by_validate_and_materialize(
    tmp_path, capsys, monkeypatch
):
    cfg = config(
        tmp_path,
        """
        catalogs:
          - name: shop
            source: {type: local_dir, path: home/in}
        """,
    )
    (tmp_path / "home" / "in").mkdir(parents=True)
    monkeypatch.setenv("FLUX_DEPTH_HOME", str(tmp_path / "home"))
    code, lines = validate(cfg, capsys)
    assert code == 2 and len(lines) == 1 and "inside the pipeline's storage root" in lines[0]
    instance = dg.DagsterInstance.ephemeral()
    with pytest.raises(ConfigErrors):
        materialize_catalog("shop", config_dir=cfg, instance=instance)
    assert instance.get_runs() == []
