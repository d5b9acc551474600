"""Build the provider a catalog's config asks for; heavy backends are imported only when used."""

from __future__ import annotations

from dataclasses import dataclass

from flux_depth_assets.config.models import (
    EachlabsProviderConfig,
    LocalProviderConfig,
    OnnxProviderConfig,
)
from flux_depth_assets.providers.base import DepthProvider


@dataclass(frozen=True)
class ProviderSecrets:
    """Values that come only from the environment (through Dagster's EnvVar). Never logged."""

    eachlabs_api_key: str | None = None
    eachlabs_base_url: str | None = None

    def __repr__(self) -> str:  # keep keys out of reprs and tracebacks
        return f"ProviderSecrets(eachlabs_api_key={'<set>' if self.eachlabs_api_key else None})"


def build_provider(config: LocalProviderConfig | EachlabsProviderConfig | OnnxProviderConfig,
                   secrets: ProviderSecrets | None = None) -> DepthProvider:
    secrets = secrets or ProviderSecrets()
    if isinstance(config, LocalProviderConfig):
        from flux_depth_assets.providers.local import LocalProvider
        return LocalProvider(config)
    if isinstance(config, EachlabsProviderConfig):
        from flux_depth_assets.providers.eachlabs import EachlabsProvider
        return EachlabsProvider(config, api_key=secrets.eachlabs_api_key,
                                base_url_override=secrets.eachlabs_base_url)
    if isinstance(config, OnnxProviderConfig):
        from flux_depth_assets.providers.onnx import OnnxProvider
        return OnnxProvider(config)
    raise TypeError(f"unknown provider config {type(config).__name__}")
