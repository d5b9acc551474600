"""Hosts in the catalog YAML: one line switches host, per-host settings, the resolved plan,
environment variables, cache identity, and the failover roster."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flux_depth_assets.config import ConfigError, load_project
from flux_depth_assets.config.models import (
    CatalogConfig,
    EachlabsProviderConfig,
    HostedProviderConfig,
    HostName,
)
from flux_depth_assets.providers.hosts import HOST_NAMES
from flux_depth_assets.providers.hosts.plan import (
    cache_identity,
    env_names,
    host_plan,
    with_environment,
)
from tests.test_config import write_config


def provider(**fields) -> EachlabsProviderConfig:
    cat = CatalogConfig.model_validate(
        {"name": "x", "source": {"type": "local_dir", "path": "p"}, "provider": fields}
    )
    return cat.provider  # type: ignore[return-value]


def test_config_host_names_are_the_adapters():
    assert HostName.__args__ == HOST_NAMES


@pytest.mark.parametrize(
    "host, url, model, key_env",
    [
        ("eachlabs", "https://api.eachlabs.ai", "flux-depth-pro", "EACHLABS_API_KEY"),
        (
            "replicate",
            "https://api.replicate.com",
            "black-forest-labs/flux-depth-pro",
            "REPLICATE_API_TOKEN",
        ),
        ("bfl", "https://api.bfl.ai", "flux-pro-1.0-depth", "BFL_API_KEY"),
    ],
)
def test_one_yaml_line_switches_host(tmp_path, host, url, model, key_env):
    cfg = write_config(
        tmp_path,
        f"""
        catalogs:
          - name: shop
            source: {{type: local_dir, path: a}}
            provider:
              name: hosted
              hosts: [{host}]
              params: {{steps: 30}}
    """,
    )
    p = load_project(cfg).catalog("shop").provider
    assert isinstance(p, HostedProviderConfig) and p.params.steps == 30
    (only,) = host_plan(p)
    assert (only.name, only.base_url, only.model, only.api_key_env) == (host, url, model, key_env)


def test_name_eachlabs_resolves_to_todays_values():
    p = provider(name="eachlabs", base_url="http://127.0.0.1:9", version="0.0.2", price_usd=0.07)
    assert type(p) is EachlabsProviderConfig
    (only,) = host_plan(p)
    assert (only.name, only.base_url, only.model, only.version, only.price_usd) == (
        "eachlabs",
        "http://127.0.0.1:9",
        "flux-depth-pro",
        "0.0.2",
        0.07,
    )
    assert (only.max_in_flight, only.creates_per_minute) == (None, None)  # none before either
    assert env_names([only]) == ["EACHLABS_API_KEY", "EACHLABS_BASE_URL"]


def test_host_list_with_per_host_settings_and_published_limits():
    p = provider(
        name="hosted",
        hosts=[
            "replicate",
            {
                "name": "bfl",
                "base_url": "http://127.0.0.1:5",
                "api_key_env": "BFL_TEAM_KEY",
                "price_usd": 0.06,
                "account": "team-a",
                "max_in_flight": 4,
            },
            {"name": "eachlabs", "creates_per_minute": 100},
        ],
    )
    replicate, bfl, eachlabs = host_plan(p)
    assert replicate.creates_per_minute == 600 and replicate.max_in_flight is None
    assert replicate.price_usd == 0.05 and replicate.version is None
    assert (bfl.base_url, bfl.api_key_env, bfl.price_usd, bfl.max_in_flight) == (
        "http://127.0.0.1:5",
        "BFL_TEAM_KEY",
        0.06,
        4,
    )
    assert bfl.account_name("k") == "team-a" and replicate.account_name("k").startswith("key-")
    assert bfl.limits().max_in_flight == 4 and replicate.limits().per_window == 600
    assert eachlabs.creates_per_minute == 100 and eachlabs.version == "0.0.1"
    assert env_names(host_plan(p)) == [
        "REPLICATE_API_TOKEN",
        "REPLICATE_BASE_URL",
        "BFL_TEAM_KEY",
        "BFL_BASE_URL",
        "EACHLABS_API_KEY",
        "EACHLABS_BASE_URL",
    ]


def test_default_host_list_is_eachlabs():
    (only,) = host_plan(provider(name="hosted"))
    assert only.name == "eachlabs"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"hosts": []}, "at least 1"),
        ({"hosts": ["fal"]}, "eachlabs"),
        ({"hosts": ["replicate", {"name": "replicate"}]}, "more than once: replicate"),
        ({"hosts": ["replicate"], "base_url": "http://x"}, "set them per host"),
        ({"hosts": ["bfl"], "model": "m"}, "set them per host"),
        ({"hosts": [{"name": "bfl", "base_url": "ftp://x"}]}, "http://"),
        ({"hosts": [{"name": "bfl", "api_key_env": "bfl key"}]}, "environment variable name"),
        ({"hosts": [{"name": "bfl", "account": "Team A"}]}, "slug"),
        ({"hosts": [{"name": "bfl", "max_in_flight": 0}]}, "greater than or equal to 1"),
        ({"hosts": [{"name": "bfl", "token": "x"}]}, "Extra inputs"),
    ],
)
def test_bad_host_settings_say_what(fields, message):
    with pytest.raises(ValidationError, match=message):
        provider(name="hosted", **fields)


def test_bad_host_in_yaml_names_file_and_line(tmp_path):
    cfg = write_config(
        tmp_path,
        """
        catalogs:
          - name: shop
            source: {type: local_dir, path: a}
            provider:
              name: hosted
              hosts: [replicate, replicat]
    """,
    )
    with pytest.raises(ConfigError) as err:
        load_project(cfg)
    assert "main.yml" in str(err.value) and "replicat" in str(err.value)


def test_environment_overrides_base_url_and_reads_keys_without_showing_them():
    plan = host_plan(provider(name="hosted", hosts=["replicate", "bfl"]))
    env = {
        "REPLICATE_API_TOKEN": " r8_secret \n",
        "REPLICATE_BASE_URL": "http://127.0.0.1:7/",
        "BFL_API_KEY": "",
    }
    replicate, bfl = with_environment(plan, env.get)
    assert replicate.host.base_url == "http://127.0.0.1:7" and replicate.key == "r8_secret"
    assert bfl.host.base_url == "https://api.bfl.ai" and bfl.key == ""
    assert "r8_secret" not in repr(replicate) and "<set>" in repr(replicate)


def test_cache_identity_is_host_specific_unless_declared_interchangeable():
    one = provider(name="hosted", hosts=["replicate"])
    two = provider(name="hosted", hosts=["eachlabs"])
    assert cache_identity(one, host_plan(one)) != cache_identity(two, host_plan(two))
    a = provider(name="hosted", hosts=["replicate"], interchangeable_results=True)
    b = provider(name="hosted", hosts=["eachlabs", "bfl"], interchangeable_results=True)
    assert cache_identity(a, host_plan(a)) == cache_identity(b, host_plan(b))
    moved = provider(name="hosted", hosts=[{"name": "replicate", "base_url": "http://127.0.0.1:1"}])
    assert cache_identity(moved, host_plan(moved)) != cache_identity(one, host_plan(one))


def test_factory_builds_one_hosted_provider_per_host_and_refuses_lists_for_now():
    from flux_depth_assets.providers.base import ProviderNotReady
    from flux_depth_assets.providers.eachlabs import EachlabsProvider
    from flux_depth_assets.providers.factory import ProviderSecrets, build_provider

    p = provider(
        name="hosted",
        hosts=[{"name": "eachlabs", "base_url": "http://127.0.0.1:3", "price_usd": 0.04}],
        mode="render",
    )
    built = build_provider(p, ProviderSecrets(eachlabs_api_key="k"))
    assert isinstance(built, EachlabsProvider) and built.name == "eachlabs"
    assert (built.base_url, built.price_usd, built.mode) == ("http://127.0.0.1:3", 0.04, "render")
    # the same catalog as `name: eachlabs` keeps its cache keys
    same = build_provider(
        provider(name="eachlabs", base_url="http://127.0.0.1:3", price_usd=0.04, mode="render"),
        ProviderSecrets("k"),
    )
    assert built.cache_key("a" * 64) == same.cache_key("a" * 64)

    secrets = ProviderSecrets(
        env={"REPLICATE_API_TOKEN": "r8_x", "REPLICATE_BASE_URL": "http://127.0.0.1:4"}
    )
    replicate = build_provider(provider(name="hosted", hosts=["replicate"]), secrets)
    assert isinstance(replicate, EachlabsProvider) and replicate.name == "replicate"
    assert replicate.model == "black-forest-labs/flux-depth-pro"
    assert replicate.base_url == "http://127.0.0.1:4"
    assert replicate.cache_key("a" * 64) != built.cache_key("a" * 64)
    replicate.check_ready()
    unset = build_provider(provider(name="hosted", hosts=["bfl"]), ProviderSecrets())
    with pytest.raises(ProviderNotReady, match="set the environment variable BFL_API_KEY"):
        unset.check_ready()
    from flux_depth_assets.providers.hosts.hosted import HostedProvider

    listed = build_provider(provider(name="hosted", hosts=["replicate", "eachlabs"]), secrets)
    assert isinstance(listed, HostedProvider)
    assert [h.name for h in listed.hosts] == ["replicate", "eachlabs"]
    bfl = build_provider(provider(name="hosted", hosts=[{"name": "bfl", "max_in_flight": 3}]))
    assert isinstance(bfl, EachlabsProvider) and bfl.limits is not None
    assert bfl.limits.max_in_flight == 3 and replicate.limits.per_window == 600
    assert "r8_x" in secrets.values() and "r8_x" not in repr(secrets)


def test_costs_by_host_groups_provider_calls_by_catalog_and_host(tmp_path, capsys):
    import pyarrow as pa

    from flux_depth_assets.cli import main as cli
    from flux_depth_assets.lineage.queries import calls_by

    rows = pa.table(
        {
            "catalog": ["shop", "shop", "shop", "shop", "lab"],
            "provider": ["replicate", "replicate", "eachlabs", "eachlabs", "bfl"],
            "status": ["succeeded", "failed", "succeeded", "succeeded", "skipped_budget"],
            "cached": [False, False, True, False, False],
            "cost_usd": [0.05, 0.05, 0.0, 0.05, 0.0],
        }
    )
    out = {
        (r["catalog"], r["provider"]): r
        for r in calls_by(rows, ["catalog", "provider"]).to_pylist()
    }
    assert out[("shop", "replicate")]["paid_calls"] == 2
    assert out[("shop", "replicate")]["cost_usd"] == pytest.approx(0.10)
    assert out[("shop", "eachlabs")]["cached"] == 1 and out[("shop", "eachlabs")]["paid_calls"] == 1
    assert out[("lab", "bfl")]["paid_calls"] == 0 and out[("shop", "replicate")]["failed"] == 1
    assert cli(["costs", "--by-host", "--root", str(tmp_path / "empty")]) == 0
    assert "no provider calls recorded" in capsys.readouterr().out
