"""YAML → pydantic loading of `dbt_like_configs/`."""

from flux_depth_assets.config.loader import (
    ConfigError,
    ConfigErrors,
    Project,
    collect_project,
    default_config_dir,
    load_project,
)
from flux_depth_assets.config.models import CatalogConfig, ModelSettings

__all__ = [
    "CatalogConfig",
    "ConfigError",
    "ConfigErrors",
    "ModelSettings",
    "Project",
    "collect_project",
    "default_config_dir",
    "load_project",
]
