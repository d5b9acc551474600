"""Host adapters for the hosted flux-depth-pro client: one thin, pure module per host, and the
registry of them. The seam they implement (`HostAdapter` and its vocabulary) is `hosts.base`."""

from __future__ import annotations

from flux_depth_assets.providers.hosts.base import HostAdapter
from flux_depth_assets.providers.hosts.bfl import BflAdapter
from flux_depth_assets.providers.hosts.eachlabs import EachlabsAdapter
from flux_depth_assets.providers.hosts.replicate import ReplicateAdapter

ADAPTERS: dict[str, HostAdapter] = {
    a.name: a for a in (EachlabsAdapter(), ReplicateAdapter(), BflAdapter())
}
HOST_NAMES = tuple(ADAPTERS)


def adapter_for(name: str) -> HostAdapter:
    """The adapter called `name`; a KeyError names the known hosts."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown host {name!r}; known hosts: {', '.join(HOST_NAMES)}") from None


__all__ = [
    "ADAPTERS",
    "HOST_NAMES",
    "BflAdapter",
    "EachlabsAdapter",
    "ReplicateAdapter",
    "adapter_for",
]
