"""A `depth_maps` run that stops dead at one phase boundary of a prediction, to be SIGKILLed there.

Run as a child process by `tests/test_paid_path_faults.py`:

    python tests/paid_driver.py --config-dir CFG --root ROOT --base-url URL --pause-at PHASE \
        --nth N --marker FILE

It materializes the catalog `faults` (source_images + depth_maps, in-process, ephemeral
instance) against the loopback fake host. At the N-th occurrence of PHASE it writes FILE and
blocks forever; the test waits for FILE, then kills the process. Phases:

- `after_create`:   the host returned the id and the journal holds it (`created`);
- `after_success`:  a poll answered success, before the download;
- `after_download`: the output bytes arrived, before they were journaled;
- `before_cache`:   the pipeline is about to cache a result (its cost already recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PHASES = ("after_create", "after_success", "after_download", "before_cache")
CATALOG = "faults"
KEY = "driver-key-QPZ-5521"


class Pause:
    def __init__(self, marker: Path, nth: int):
        self.marker, self.nth, self.seen = marker, nth, 0
        self.lock = threading.Lock()

    def hit(self) -> bool:
        with self.lock:
            self.seen += 1
            if self.seen != self.nth:
                return False
        self.marker.write_text("paused\n")
        return True


def install(phase: str, pause: Pause) -> None:
    from flux_depth_assets.providers.eachlabs.client import EachlabsClient
    from flux_depth_assets.providers.eachlabs.journal import PredictionJournal
    from flux_depth_assets.storage.cache import DepthCache

    if phase == "after_create":
        write = PredictionJournal.write

        def journal_write(self: Any, entry: Any) -> None:
            write(self, entry)
            if entry.state == "created" and pause.hit():
                threading.Event().wait()

        PredictionJournal.write = journal_write  # type: ignore[method-assign]
    elif phase == "after_success":
        get = EachlabsClient.get

        async def client_get(self: Any, *args: Any, **kw: Any) -> Any:
            out = await get(self, *args, **kw)
            if out[0].state == "succeeded" and pause.hit():
                await asyncio.Event().wait()
            return out

        EachlabsClient.get = client_get  # type: ignore[method-assign]
    elif phase == "after_download":
        download = EachlabsClient.download

        async def client_download(self: Any, *args: Any, **kw: Any) -> Any:
            out = await download(self, *args, **kw)
            if pause.hit():
                await asyncio.Event().wait()
            return out

        EachlabsClient.download = client_download  # type: ignore[method-assign]
    elif phase == "before_cache":
        put = DepthCache.put

        def cache_put(self: Any, *args: Any, **kw: Any) -> None:
            if pause.hit():
                threading.Event().wait()
            put(self, *args, **kw)

        DepthCache.put = cache_put  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config-dir", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--base-url", required=True)
    p.add_argument("--pause-at", choices=PHASES, required=True)
    p.add_argument("--nth", type=int, default=1)
    p.add_argument("--marker", required=True)
    args = p.parse_args(argv)
    install(args.pause_at, Pause(Path(args.marker), args.nth))

    import dagster as dg

    from flux_depth_assets.defs.resources import DepthProviderResource, StorageResource
    from flux_depth_assets.defs.runner import materialize_catalog

    outcome = materialize_catalog(
        CATALOG,
        config_dir=args.config_dir,
        instance=dg.DagsterInstance.ephemeral(),
        assets=["source_images", "depth_maps"],
        resources={
            "storage": StorageResource(root=args.root),
            "depth_provider": DepthProviderResource(
                eachlabs_api_key=KEY, eachlabs_base_url=args.base_url
            ),
        },
    )
    print("finished", outcome.success, outcome.error, flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
