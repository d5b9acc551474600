"""A child process running the hosted provider on one catalog's images: `python -m
tests.provider_child <json options>`; prints one JSON line with each image's status and error."""

from __future__ import annotations

import json
import sys
from typing import Any

from flux_depth_assets.storage.store import Storage
from tests.test_eachlabs_provider import make_items
from tests.test_hosted_provider_hosts import hosted


def main(opts: dict[str, Any]) -> dict[str, Any]:
    provider = hosted(opts["host"], opts["base_url"], **opts.get("settings", {}))
    provider.bind_storage(Storage(opts["root"]), opts["run_id"])
    items = make_items(provider, opts["n"], first=opts.get("first", 0))  # type: ignore[arg-type]
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()  # start together
    preds = provider.predict_many(items)
    return {"status": [p.status for p in preds], "errors": [p.error for p in preds]}


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
