"""Build the provider a catalog's config asks for; heavy backends are imported only when used."""

from __future__ import annotations

from dataclasses import dataclass

from flux_depth_assets.config.models import (
    EachlabsProviderConfig,
    HostedProviderConfig,
    LocalProviderConfig,
    OnnxProviderConfig,
)
from flux_depth_assets.providers.base import DepthProvider, ProviderNotReady


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
    if isinstance(config, HostedProviderConfig):
        config = _eachlabs_only(config)
    if isinstance(config, EachlabsProviderConfig):
        from flux_depth_assets.providers.eachlabs import EachlabsProvider
        return EachlabsProvider(config, api_key=secrets.eachlabs_api_key,
                                base_url_override=secrets.eachlabs_base_url)
    if isinstance(config, OnnxProviderConfig):
        from flux_depth_assets.providers.onnx import OnnxProvider
        return OnnxProvider(config)
    raise TypeError(f"unknown provider config {type(config).__name__}")


def _eachlabs_only(config: HostedProviderConfig) -> EachlabsProviderConfig:
    """`name: hosted` with Eachlabs as its only host is the eachlabs provider (the host list,
    failover and the other hosts' adapters reach the client once it speaks through them)."""
    names = [h.name for h in config.hosts]
    if names != ["eachlabs"]:
        raise ProviderNotReady(
            f"provider hosts {names}: this version runs the hosted provider on eachlabs only; "
            "use `hosts: [eachlabs]` (or `name: eachlabs`). Nothing was sent.")
    host = config.hosts[0]
    if host.api_key_env or host.base_url_env or host.account or host.max_in_flight or \
            host.creates_per_minute:
        raise ProviderNotReady("per-host api_key_env, base_url_env, account and limits are not "
                               "used by this version; remove them. Nothing was sent.")
    shared = config.model_dump(exclude={"name", "hosts", "unavailable_after_s",
                                        "interchangeable_results"})
    for field in ("base_url", "model", "version", "price_usd"):
        value = getattr(host, field)
        if value is not None:
            shared[field] = value
    return EachlabsProviderConfig.model_validate(shared)
