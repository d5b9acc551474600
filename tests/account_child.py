"""A child process sharing a host account: creates predictions through an `AccountGate`.

`python -m tests.account_child <json options>`; prints one JSON line with what it did.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from flux_depth_assets.providers.hosts import ADAPTERS
from flux_depth_assets.providers.hosts.limits import AccountGate, AccountLimits
from flux_depth_assets.storage.store import Storage
from tests.hostcalls import Driver


async def run(opts: dict[str, Any]) -> dict[str, Any]:
    adapter = ADAPTERS[opts["host"]]
    gate = AccountGate(
        Storage(opts["root"]),
        adapter.name,
        "acct",
        AccountLimits(
            max_in_flight=opts.get("max_in_flight"),
            per_window=opts.get("per_window"),
            window_s=opts.get("window_s", 60.0),
            poll_s=0.05,
            stop_check_s=0.0,
        ),
    )
    driver = Driver(adapter, opts["base_url"])
    started = time.time()
    done: dict[str, Any] = {"created": 0, "refused": [], "stopped": None}
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()  # start together: the parent releases both children at once

    async def one(i: int) -> None:
        if done["stopped"] or (reason := gate.stopped_since(started)):
            done["stopped"] = done["stopped"] or reason
            return
        slot = await gate.acquire()
        try:
            await gate.claim()
            response = await asyncio.to_thread(driver.create, opts["shade"] + i)
            if response.status_code >= 300:
                error = adapter.classify("create", response)
                done["refused"].append(error.kind.value)
                if error.stops_account:
                    gate.stop(f"HTTP {error.status}: {error.message}")
                    done["stopped"] = error.kind.value
                return
            done["created"] += 1
            created = adapter.parse_create(response.json())
            assert created is not None
            await asyncio.to_thread(driver.wait, created)
        finally:
            gate.release(slot)

    workers = opts.get("workers", 4)
    queue = list(range(opts["n"]))

    async def worker() -> None:
        while queue:
            await one(queue.pop(0))

    await asyncio.gather(*(worker() for _ in range(workers)))
    driver.close()
    return done


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))), flush=True)
