"""The `eachlabs` provider: flux-depth-pro on a hosted prediction API (async httpx client,
bounded concurrency, retries, deadline, a durable prediction-id journal, cost per call).

- `EachlabsProvider(config, api_key=..., base_url_override=..., journal_storage=None)`: the
  `DepthProvider`; `predict_many(items, progress)` is its one sync entry point.
- `flow`: what happens to one image (resume or create, poll, download, decode); `tracking`: the
  per-run counters, each image's record and the progress lines.
- `client.EachlabsClient`: the wire protocol (create, poll, download) on one `httpx.AsyncClient`;
  `protocol`: reading the host's answers (pure); `pacing`: retry backoff, rate limit, poll
  schedule.
- `images`: the control image sent and the output read back (pure).
- `journal.PredictionJournal`: `journal/eachlabs/<cache_key>.json` on a `Storage`.
"""

from flux_depth_assets.providers.eachlabs.client import EachlabsClient
from flux_depth_assets.providers.eachlabs.journal import JournalEntry, PredictionJournal
from flux_depth_assets.providers.eachlabs.pacing import RetryPolicy
from flux_depth_assets.providers.eachlabs.protocol import EachlabsError
from flux_depth_assets.providers.eachlabs.provider import EachlabsNotReady, EachlabsProvider

__all__ = [
    "EachlabsClient",
    "EachlabsError",
    "EachlabsNotReady",
    "EachlabsProvider",
    "JournalEntry",
    "PredictionJournal",
    "RetryPolicy",
]
