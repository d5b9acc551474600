"""Build the provider a catalog's config asks for; heavy backends are imported only when used."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flux_depth_assets.config.models import (
    EachlabsProviderConfig,
    HostedProviderConfig,
    LocalProviderConfig,
    OnnxProviderConfig,
)
from flux_depth_assets.providers.base import DepthProvider


@dataclass(frozen=True)
class ProviderSecrets:
    """Values that come only from the environment (through Dagster's EnvVar). Never logged."""

    eachlabs_api_key: str | None = None
    eachlabs_base_url: str | None = None
    env: Mapping[str, str | None] = field(default_factory=dict)  # other hosts' variables, by name

    def __repr__(self) -> str:  # keep keys out of reprs and tracebacks
        return f"ProviderSecrets(eachlabs_api_key={'<set>' if self.eachlabs_api_key else None})"

    def value(self, name: str) -> str | None:
        """The value of the environment variable `name` as resolved by the resources."""
        if name == "EACHLABS_API_KEY":
            return self.eachlabs_api_key
        if name == "EACHLABS_BASE_URL":
            return self.eachlabs_base_url
        return self.env.get(name)

    def values(self) -> list[str | None]:
        """Every value held (for redaction)."""
        return [self.eachlabs_api_key, self.eachlabs_base_url, *self.env.values()]


def host_env_names(config: object) -> list[str]:
    """The environment variables a hosted config reads besides EACHLABS_* (keys, base URLs)."""
    if not isinstance(config, HostedProviderConfig):
        return []
    from flux_depth_assets.providers.hosts.plan import env_names, host_plan

    return [n for n in env_names(host_plan(config)) if not n.startswith("EACHLABS_")]


def build_provider(
    config: LocalProviderConfig | EachlabsProviderConfig | OnnxProviderConfig,
    secrets: ProviderSecrets | None = None,
) -> DepthProvider:
    secrets = secrets or ProviderSecrets()
    if isinstance(config, LocalProviderConfig):
        from flux_depth_assets.providers.local import LocalProvider

        return LocalProvider(config)
    if isinstance(config, HostedProviderConfig):
        return _hosted(config, secrets)
    if isinstance(config, EachlabsProviderConfig):
        from flux_depth_assets.providers.eachlabs import EachlabsProvider

        return EachlabsProvider(
            config, api_key=secrets.eachlabs_api_key, base_url_override=secrets.eachlabs_base_url
        )
    if isinstance(config, OnnxProviderConfig):
        from flux_depth_assets.providers.onnx import OnnxProvider

        return OnnxProvider(config)
    raise TypeError(f"unknown provider config {type(config).__name__}")


def _hosted(config: HostedProviderConfig, secrets: ProviderSecrets) -> DepthProvider:
    """`name: hosted`: the hosted client in one host's dialect, or, for a list of hosts, one per
    host behind `HostedProvider` (failover in the list's order). Each host's account limits
    (configured, else published) are held across runs sharing the account."""
    from flux_depth_assets.providers.eachlabs import EachlabsProvider
    from flux_depth_assets.providers.hosts.hosted import HostedProvider
    from flux_depth_assets.providers.hosts.plan import host_plan

    shared = config.model_dump(
        exclude={"name", "hosts", "unavailable_after_s", "interchangeable_results"}
    )
    providers = []
    for host in host_plan(config):
        settings = {
            **shared,
            "base_url": host.base_url,
            "model": host.model,
            "version": host.version or "",
            "price_usd": host.price_usd,
        }
        providers.append(
            EachlabsProvider(
                EachlabsProviderConfig.model_validate(settings),
                api_key=secrets.value(host.api_key_env),
                base_url_override=secrets.value(host.base_url_env),
                adapter=host.adapter,
                key_env=host.api_key_env,
                account=host.account,
                limits=host.limits(),
                unavailable_after_s=config.unavailable_after_s if len(config.hosts) > 1 else None,
            )
        )
    return providers[0] if len(providers) == 1 else HostedProvider(config, providers)
