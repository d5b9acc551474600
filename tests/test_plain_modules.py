"""The plain modules import no Dagster, directly or through another module.

ruff's banned-api rule (TID251, pyproject.toml) catches a direct `import dagster`; this test also
catches one that arrives through an import chain (e.g. a plain module importing `defs.resources`).
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import flux_depth_assets

# The Dagster layer and the code location: everything else is a plain module.
DAGSTER_LAYER = ("flux_depth_assets.defs", "flux_depth_assets.definitions")


def plain_modules() -> list[str]:
    names = [
        m.name
        for m in pkgutil.walk_packages(flux_depth_assets.__path__, "flux_depth_assets.")
        if not m.name.startswith(DAGSTER_LAYER)
    ]
    # `python -m flux_depth_assets.fakeapi` runs the server: importing __main__ would start it.
    return sorted(n for n in names if not n.endswith(".__main__"))


def test_the_plain_modules_are_found() -> None:
    names = plain_modules()
    for expected in ("config.models", "lineage.record", "storage.store", "pipeline.scan", "paths"):
        assert f"flux_depth_assets.{expected}" in names


def test_importing_every_plain_module_loads_no_dagster() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {plain_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "    loaded = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.'))\n"
        "    if loaded:\n"
        "        sys.exit(f'{name} imports Dagster ({loaded[0]})')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr or proc.stdout
