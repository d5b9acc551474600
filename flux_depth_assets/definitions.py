"""The single Dagster entry point (`workspace.yaml`, `dagster dev -m flux_depth_assets.definitions`)."""

import dagster as dg

from flux_depth_assets.defs.build import build_definitions


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
