"""`python -m flux_depth_assets.fakeapi --port 8787 ...` (same flags as `flux-depth fake-api`)."""

from flux_depth_assets.fakeapi.runner import main

raise SystemExit(main())
