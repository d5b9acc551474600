"""YAML → pydantic loading of `dbt_like_configs/`."""

from flux_depth_assets.config.loader import ConfigError, Project, default_config_dir, load_project
from flux_depth_assets.config.models import CatalogConfig, ModelSettings

__all__ = ["CatalogConfig", "ConfigError", "ModelSettings", "Project", "default_config_dir",
           "load_project"]
