"""Owners, tags and descriptions declared in the YAML, on the Dagster objects they describe.

- Assets (shared by every catalog, one partition each): owners are the project file's `owners`
  plus every catalog's `owners`; the description lists each catalog's `description`.
- A catalog's `tags` go on its own runs (schedule, upload sensor, CLI) and on its sensor and
  schedule; an asset's tags would apply to every catalog's partition, so they are not used there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

from flux_depth_assets.config.loader import Project
from flux_depth_assets.config.models import CatalogConfig


def yaml_owners(project: Project) -> list[str]:
    """The project's owners, then each catalog's, each once, in declaration order."""
    declared = [*project.project.owners, *(o for c in project.catalogs.values() for o in c.owners)]
    return list(dict.fromkeys(declared))


def catalogs_description(catalogs: Iterable[CatalogConfig]) -> str:
    lines = [f"- `{c.name}`: {c.description}" for c in catalogs if c.description]
    return "Catalogs:\n" + "\n".join(lines) if lines else ""


def with_yaml_attributes(
    assets: Sequence[dg.AssetsDefinition], project: Project | None
) -> list[dg.AssetsDefinition]:
    """`assets` with the YAML's owners and catalog descriptions on every spec."""
    if project is None:
        return list(assets)
    owners = yaml_owners(project)
    listed = catalogs_description(project.catalogs.values())

    def attributes(spec: dg.AssetSpec) -> dg.AssetSpec:
        description = "\n\n".join(d for d in (spec.description, listed) if d)
        return spec.replace_attributes(owners=owners, description=description or None)

    return list(dg.map_asset_specs(attributes, assets))


def catalog_tags(catalog: CatalogConfig, system: Mapping[str, str]) -> dict[str, str]:
    """Tags of a catalog's runs, sensor or schedule: the YAML's, then the system's (which win)."""
    return {**catalog.tags, **system}
