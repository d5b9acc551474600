"""dbt_like_configs/ loading: the shipped config, path resolution, and errors that say where."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flux_depth_assets.config import ConfigError, load_project
from flux_depth_assets.config.models import EachlabsProviderConfig, LocalDirSource
from tests.conftest import REPO


def write_config(root: Path, catalogs_yaml: str, models_yaml: str | None = None) -> Path:
    cfg = root / "configs"
    (cfg / "catalogs").mkdir(parents=True)
    (cfg / "flux_depth_project.yml").write_text('owners: ["team:t"]\n')
    (cfg / "catalogs" / "main.yml").write_text(textwrap.dedent(catalogs_yaml))
    if models_yaml:
        (cfg / "models").mkdir()
        (cfg / "models" / "m.yml").write_text(textwrap.dedent(models_yaml))
    return cfg


def test_shipped_config_loads_with_the_demo_catalog():
    project = load_project(REPO / "dbt_like_configs")
    demo = project.catalog("demo")
    assert isinstance(demo.source, LocalDirSource)
    assert Path(demo.source.path) == REPO / "examples" / "demo_catalog"
    assert demo.provider.name == "local"
    assert demo.max_failure_ratio == 0.2


def test_relative_paths_resolve_against_the_config_dirs_parent(tmp_path):
    cfg = write_config(
        tmp_path,
        """
        catalogs:
          - name: a
            source: {type: local_dir, path: photos}
    """,
    )
    assert load_project(cfg).catalog("a").source.path == str((tmp_path / "photos").resolve())


def test_env_var_selects_the_config_dir(tmp_path, monkeypatch):
    cfg = write_config(
        tmp_path, "catalogs:\n  - {name: from-env, source: {type: local_dir, path: x}}\n"
    )
    monkeypatch.setenv("FLUX_DEPTH_CONFIG_DIR", str(cfg))
    assert list(load_project().catalogs) == ["from-env"]


def test_unknown_field_names_file_line_catalog_and_field(tmp_path):
    cfg = write_config(
        tmp_path,
        """
        catalogs:
          - name: good
            source: {type: local_dir, path: a}
          - name: shop
            source: {type: local_dir, path: b}
            max_failure_ratoi: 0.5
    """,
    )
    with pytest.raises(ConfigError) as err:
        load_project(cfg)
    msg = str(err.value)
    assert "main.yml:7" in msg and "catalog 'shop'" in msg and "max_failure_ratoi" in msg


def test_out_of_range_provider_param_names_the_nested_field(tmp_path):
    cfg = write_config(
        tmp_path,
        """
        catalogs:
          - name: hosted
            source: {type: local_dir, path: a}
            provider:
              name: eachlabs
              params:
                steps: 80
    """,
    )
    with pytest.raises(ConfigError) as err:
        load_project(cfg)
    msg = str(err.value)
    assert "main.yml:8" in msg and "provider.params.steps" in msg and "50" in msg


def test_valid_eachlabs_config_parses():
    from flux_depth_assets.config.models import CatalogConfig

    cat = CatalogConfig.model_validate(
        {
            "name": "x",
            "source": {"type": "local_dir", "path": "p"},
            "provider": {
                "name": "eachlabs",
                "mode": "render",
                "params": {"prompt": "a sofa", "seed": 3},
            },
        }
    )
    assert isinstance(cat.provider, EachlabsProviderConfig)
    assert cat.provider.params.seed == 3 and cat.provider.price_usd == 0.05


@pytest.mark.parametrize("name", ["Demo", "-x", "a b", "../etc", ""])
def test_catalog_names_must_be_slugs(tmp_path, name):
    cfg = write_config(
        tmp_path,
        f"""
        catalogs:
          - name: "{name}"
            source: {{type: local_dir, path: a}}
    """,
    )
    with pytest.raises(ConfigError, match="name"):
        load_project(cfg)


def test_malformed_yaml_names_the_line(tmp_path):
    cfg = write_config(tmp_path, "catalogs:\n  - name: a\n    source: {type: local_dir, path: [x\n")
    with pytest.raises(ConfigError) as err:
        load_project(cfg)
    assert "main.yml:" in str(err.value) and "malformed YAML" in str(err.value)


def test_duplicate_catalog_names_are_refused(tmp_path):
    cfg = write_config(
        tmp_path,
        """
        catalogs:
          - {name: a, source: {type: local_dir, path: x}}
          - {name: a, source: {type: local_dir, path: y}}
    """,
    )
    with pytest.raises(ConfigError, match="duplicate catalog"):
        load_project(cfg)


def test_unknown_source_type_is_refused(tmp_path):
    cfg = write_config(tmp_path, "catalogs:\n  - {name: a, source: {type: ftp, path: x}}\n")
    with pytest.raises(ConfigError) as err:
        load_project(cfg)
    assert "source" in str(err.value)


def test_model_settings_merge_project_then_catalog(tmp_path):
    cfg = write_config(
        tmp_path,
        """
        catalogs:
          - name: a
            source: {type: local_dir, path: x}
            models: {normal_maps: {convention: directx}}
          - {name: b, source: {type: local_dir, path: x}}
    """,
        models_yaml="models:\n  normal_maps: {strength: 2.5}\n",
    )
    project = load_project(cfg)
    a, b = project.settings_for("a").normal_maps, project.settings_for("b").normal_maps
    assert (a.strength, a.convention) == (2.5, "directx")
    assert (b.strength, b.convention) == (2.5, "opengl")


def test_unknown_catalog_lists_the_declared_ones():
    project = load_project(REPO / "dbt_like_configs")
    with pytest.raises(KeyError, match="declared: .*demo"):
        project.catalog("nope")
