"""`name: hosted` with several hosts: the same model on each, in order of preference.

Each host runs as its own hosted client (its adapter, key, account limits). Images go to the
first host; those a host refused without creating anything (it does not serve the model, the
account is out of credit or its key is rejected) go to the next host, with one warning. An image
whose prediction the journal already holds on a host goes to that host, whatever the order:
polling it is free, creating it elsewhere would pay twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from flux_depth_assets.config.models import HostedProviderConfig
from flux_depth_assets.paths import default_home
from flux_depth_assets.providers.base import (
    DepthPrediction,
    DepthProvider,
    ProgressFn,
    ProviderInput,
    ProviderNotReady,
)
from flux_depth_assets.providers.eachlabs import EachlabsProvider
from flux_depth_assets.providers.eachlabs.client import url_host
from flux_depth_assets.providers.eachlabs.journal import PredictionJournal
from flux_depth_assets.providers.hosts.plan import cache_identity, host_plan
from flux_depth_assets.storage.store import Storage

log = logging.getLogger(__name__)


class HostedProvider(DepthProvider):
    """flux-depth-pro on a list of hosts with failover; `hosts` are built per host, in order."""

    name = "hosted"
    model = "flux-depth-pro"

    def __init__(self, config: HostedProviderConfig, hosts: list[EachlabsProvider]):
        self.config = config
        self.hosts = hosts
        self.mode = config.mode
        self.price_usd = max(h.price_usd for h in hosts)
        self.storage: Storage | None = None
        self._ready: list[EachlabsProvider] = list(hosts)

    def __repr__(self) -> str:
        return f"HostedProvider(hosts={[h.name for h in self.hosts]})"

    def cache_params(self) -> dict[str, Any]:
        params = dict(self.hosts[0].cache_params())
        params.pop("host", None)
        params.pop("version", None)
        return {**params, **cache_identity(self.config, host_plan(self.config))}

    def check_ready(self) -> None:
        ready, problems = [], []
        for host in self.hosts:
            try:
                host.check_ready()
            except ProviderNotReady as exc:
                problems.append(str(exc))
            else:
                ready.append(host)
        if not ready:
            raise ProviderNotReady("; ".join(problems))
        for problem in problems:
            log.warning("hosted: %s; that host is skipped", problem)
        self._ready = ready

    def bind_storage(self, storage: Any, run_id: str = "") -> None:
        self.storage = storage
        for host in self.hosts:
            host.bind_storage(storage, run_id)

    def settle(self, cache_keys: Sequence[str]) -> None:
        for host in self.hosts:
            host.settle(cache_keys)

    def stop_reason(self) -> str | None:
        return next((r for r in (h.stop_reason() for h in self.hosts) if r), None)

    def predict_many(
        self, items: Sequence[ProviderInput], progress: ProgressFn | None = None
    ) -> list[DepthPrediction]:
        self.check_ready()
        out: list[DepthPrediction | None] = [None] * len(items)
        queues: list[list[int]] = [[] for _ in self._ready]
        held = self._journaled_hosts({i.cache_key for i in items})
        netlocs = [url_host(h.base_url) for h in self._ready]
        for index, item in enumerate(items):
            netloc = held.get(item.cache_key)
            if netloc is None:
                queues[0].append(index)
            elif netloc in netlocs:
                queues[netlocs.index(netloc)].append(index)
            else:
                out[index] = DepthPrediction(
                    image_id=item.image_id,
                    status="failed",
                    cost_usd=0.0,
                    error=f"its prediction is held by {netloc}, which this catalog no longer lists "
                    "(or has no key for); it stays journaled (creating it elsewhere would "
                    "pay twice)",
                )
        for n, host in enumerate(self._ready):
            if not queues[n]:
                continue
            preds = host.predict_many([items[i] for i in queues[n]], progress)
            moved = 0
            # the host was given up: images it never created (refused, unreachable) move on
            refused = next(
                (p.extra["host_refused"] for p in preds if p.extra.get("host_refused")), None
            )
            for index, pred in zip(queues[n], preds):
                pred.extra["host"] = host.name
                never_created = pred.extra.get("host_refused") or pred.extra.get("not_created")
                if (
                    refused
                    and never_created
                    and n + 1 < len(self._ready)
                    and pred.prediction_id is None
                    and not pred.extra.get("uncertain_create_attempts")
                ):
                    queues[n + 1].append(index)
                    moved += 1
                else:
                    out[index] = pred
            if moved:
                line = (
                    f"hosted: {host.name} refused ({refused}); skipped for the rest of this "
                    f"run, {moved} image(s) go to {self._ready[n + 1].name}"
                )
                log.warning(line)
                if progress is not None:
                    progress(line)
        return [p for p in out if p is not None]

    def _journaled_hosts(self, keys: set[str]) -> dict[str, str]:
        """cache key → the host (netloc) holding its journaled prediction."""
        journal = PredictionJournal(self.storage or Storage(default_home()))
        return {k: e.host for k, e in journal.load(keys).items()}
