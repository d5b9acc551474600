"""From a catalog's provider config to the hosts a run may use, in order, with every value
resolved (the config's, else the adapter's), and the environment each one reads.

`name: eachlabs` and `name: hosted` both resolve here, so the client has one code path: the
former is a one-host plan with exactly today's values (base URL, model, version, price, no
account limits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from flux_depth_assets.config.models import EachlabsProviderConfig, HostedProviderConfig
from flux_depth_assets.providers.hosts import adapter_for
from flux_depth_assets.providers.hosts.base import HostAdapter
from flux_depth_assets.providers.hosts.limits import AccountLimits, account_id

MINUTE_S = 60.0


@dataclass(frozen=True)
class ResolvedHost:
    """One host of a run's plan; nothing here is secret (keys are read from `api_key_env`)."""

    adapter: HostAdapter
    base_url: str
    model: str
    version: str | None
    price_usd: float
    api_key_env: str
    base_url_env: str
    account: str | None = None
    max_in_flight: int | None = None
    creates_per_minute: int | None = None

    @property
    def name(self) -> str:
        return self.adapter.name

    @property
    def netloc(self) -> str:
        """The host part of the base URL: what the journal and the cache key record."""
        return httpx.URL(self.base_url).netloc.decode()

    def account_name(self, key: str) -> str:
        """The account the shared limits are kept under: configured, else a hash of the key."""
        return self.account or account_id(key)

    def limits(self, window_s: float = MINUTE_S) -> AccountLimits:
        return AccountLimits(
            max_in_flight=self.max_in_flight, per_window=self.creates_per_minute, window_s=window_s
        )

    def cache_identity(self) -> dict[str, Any]:
        return {"host": self.netloc, "model": self.model, "version": self.version}


def host_plan(config: EachlabsProviderConfig) -> list[ResolvedHost]:
    """The hosts `config` may use, in order of preference."""
    if not isinstance(config, HostedProviderConfig):
        adapter = adapter_for("eachlabs")
        return [
            ResolvedHost(
                adapter=adapter,
                base_url=config.base_url,
                model=config.model,
                version=config.version,
                price_usd=config.price_usd,
                api_key_env=adapter.api_key_env,
                base_url_env=adapter.base_url_env,
            )
        ]
    plan = []
    for entry in config.hosts:
        adapter = adapter_for(entry.name)
        published = adapter.limits
        plan.append(
            ResolvedHost(
                adapter=adapter,
                base_url=entry.base_url or adapter.default_base_url,
                model=entry.model or adapter.default_model,
                version=entry.version if entry.version is not None else adapter.default_version,
                price_usd=entry.price_usd if entry.price_usd is not None else adapter.price_usd,
                api_key_env=entry.api_key_env or adapter.api_key_env,
                base_url_env=entry.base_url_env or adapter.base_url_env,
                account=entry.account,
                max_in_flight=entry.max_in_flight or published.max_in_flight,
                creates_per_minute=entry.creates_per_minute or published.creates_per_minute,
            )
        )
    return plan


def cache_identity(config: EachlabsProviderConfig, plan: list[ResolvedHost]) -> dict[str, Any]:
    """What the hosts contribute to the cache key: every listed host (so a result never passes
    for another host's), or only the model when the catalog declares results interchangeable."""
    if isinstance(config, HostedProviderConfig) and config.interchangeable_results:
        return {"hosts": "interchangeable"}
    return {"hosts": [h.cache_identity() for h in plan]}


def env_names(plan: list[ResolvedHost]) -> list[str]:
    """Every environment variable the plan reads (keys and base-URL overrides), in order."""
    names: list[str] = []
    for h in plan:
        names += [n for n in (h.api_key_env, h.base_url_env) if n not in names]
    return names


@dataclass(frozen=True)
class HostCredentials:
    """A host with its key (from the environment). `repr` never shows the key."""

    host: ResolvedHost
    key: str

    def __repr__(self) -> str:
        return f"HostCredentials({self.host.name}, key={'<set>' if self.key else '<unset>'})"


def with_environment(
    plan: list[ResolvedHost], getenv: Callable[[str], str | None]
) -> list[HostCredentials]:
    """The plan with base-URL overrides applied and keys read (`getenv`: Dagster's EnvVar in
    the assets, `os.environ.get` elsewhere). Missing keys stay empty: the client reports them."""
    out = []
    for h in plan:
        override = (getenv(h.base_url_env) or "").strip()
        resolved = replace(h, base_url=override.rstrip("/")) if override else h
        out.append(HostCredentials(resolved, (getenv(h.api_key_env) or "").strip()))
    return out
