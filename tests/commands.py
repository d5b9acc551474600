"""The project's console scripts, run from whatever checkout and virtualenv run the tests."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def console_script(name: str) -> str:
    """`name` as installed beside the interpreter running the tests (a virtualenv anywhere, active
    or not), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"console script {name!r} is not installed: pip install -e '.[dev]'")
    return found


def subprocess_env(*, unset: Iterable[str] = (), **extra: str) -> dict[str, str]:
    """The test's environment with this checkout first on PYTHONPATH, so a subprocess imports the
    code under test whichever checkout an editable install points to."""
    env = {k: v for k, v in os.environ.items() if k not in set(unset)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env
