"""Typed, swappable resources: where to write, which catalogs exist, which depth backend to use.

Secrets and locations are resolved at run time through Dagster's `EnvVar`, never at import,
and never echoed: the API key only reaches the provider object.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from flux_depth_assets.config import CatalogConfig, Project, load_project
from flux_depth_assets.config.models import LocalProviderConfig
from flux_depth_assets.paths import HOME_ENV, default_home
from flux_depth_assets.pipeline.parallel import MIN_POOL_TASKS, PoolConfig, kept_pools
from flux_depth_assets.providers.base import DepthProvider
from flux_depth_assets.providers.factory import ProviderSecrets, build_provider, host_env_names
from flux_depth_assets.storage.store import Storage


class StorageResource(dg.ConfigurableResource):
    """The storage root: a local folder or `s3://bucket/prefix` (default: `$FLUX_DEPTH_HOME`)."""

    root: str | None = None
    s3_endpoint_url: str | None = None  # MinIO / moto; else boto's usual environment

    def resolved_root(self) -> str:
        return self.root or dg.EnvVar(HOME_ENV).get_value() or default_home()

    def get(self) -> Storage:
        root = self.resolved_root()
        options = {}
        endpoint = (
            self.s3_endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        if root.startswith("s3://") and endpoint:
            options = {"client_kwargs": {"endpoint_url": endpoint}}
        return Storage(root, storage_options=options)


class CatalogsResource(dg.ConfigurableResource):
    """The `dbt_like_configs/` directory (default: `$FLUX_DEPTH_CONFIG_DIR` or the repo's)."""

    config_dir: str | None = None

    def load(self) -> Project:
        return load_project(self.config_dir)


class DepthProviderResource(dg.ConfigurableResource):
    """Builds each catalog's provider; tests swap in a subclass that returns a fake."""

    eachlabs_api_key: str | None = None  # default: EnvVar("EACHLABS_API_KEY") at run time
    eachlabs_base_url: str | None = None  # default: EnvVar("EACHLABS_BASE_URL") at run time

    def secrets(self, config: object = None) -> ProviderSecrets:
        """EACHLABS_* always; with a hosted `config`, its hosts' variables too (REPLICATE_API_TOKEN,
        BFL_API_KEY, their base URLs, or the names the catalog sets)."""
        return ProviderSecrets(
            eachlabs_api_key=self.eachlabs_api_key or dg.EnvVar("EACHLABS_API_KEY").get_value(),
            eachlabs_base_url=self.eachlabs_base_url or dg.EnvVar("EACHLABS_BASE_URL").get_value(),
            env={name: dg.EnvVar(name).get_value() for name in host_env_names(config)},
        )

    def for_catalog(self, catalog: CatalogConfig, purpose: str = "depth") -> DepthProvider:
        """The catalog's provider; a `render`-mode catalog gets its depth maps from `local`."""
        config = catalog.provider
        if purpose == "depth" and getattr(config, "mode", "depth") == "render":
            config = LocalProviderConfig()
        return build_provider(config, self.secrets(config))


class ComputeResource(dg.ConfigurableResource):
    """Where per-image CPU work runs: every local core by default, or a Dask cluster.

    One setting moves a deployment onto a cluster: `dask_scheduler` here (run config YAML:
    `resources: {compute: {config: {dask_scheduler: tcp://host:8786}}}`) or the environment
    variable `FLUX_DEPTH_DASK_SCHEDULER`. `workers: 1` runs everything in the run's process
    (same outputs, byte for byte). See docs/deployment.md.
    """

    workers: int | None = None  # default: $FLUX_DEPTH_WORKERS, else every core
    dask_scheduler: str | None = None  # default: $FLUX_DEPTH_DASK_SCHEDULER, else local
    chunk_size: int = 8  # images per unit of work sent to a worker
    min_pool_tasks: int = MIN_POOL_TASKS  # fewer images run in the run's process

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[ComputeResource]:
        """The local pool's workers last as long as the resource (a run; a step in its own
        process), so the assets and checks after the first reuse them warm."""
        with kept_pools(), super().yield_for_execution(context) as resource:
            yield resource

    def pool(self) -> PoolConfig:
        env = PoolConfig.from_env()
        return PoolConfig(
            workers=self.workers if self.workers is not None else env.workers,
            dask_scheduler=self.dask_scheduler or env.dask_scheduler,
            chunk_size=max(1, self.chunk_size),
            min_tasks=self.min_pool_tasks,
        )


ENV_SELECTOR = "FLUX_DEPTH_ENV"


def default_resources(env: str | None = None) -> dict[str, dg.ConfigurableResource]:
    """Resources per environment (`FLUX_DEPTH_ENV` = local | ci | prod, read when definitions load).

    local/ci: everything optional, resolved at run time (the demo needs no variable at all).
    prod: the storage root and the API key are required `EnvVar`s, so a missing one fails loudly
    at run start instead of silently writing to a local folder.
    """
    env = env or os.environ.get(ENV_SELECTOR, "local")
    if env not in ("local", "ci", "prod"):
        raise ValueError(f"{ENV_SELECTOR}={env!r}: expected local, ci or prod")
    if env == "prod":
        return {
            "storage": StorageResource(root=dg.EnvVar(HOME_ENV)),
            "catalogs": CatalogsResource(),
            "depth_provider": DepthProviderResource(eachlabs_api_key=dg.EnvVar("EACHLABS_API_KEY")),
            "compute": ComputeResource(),
        }
    return {
        "storage": StorageResource(),
        "catalogs": CatalogsResource(),
        "depth_provider": DepthProviderResource(),
        "compute": ComputeResource(),
    }
