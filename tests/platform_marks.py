"""The ``posix_only``/``linux_only`` markers (registered in pyproject.toml): a test that needs
a platform's behaviour skips, with its reason, only where that platform is missing; on Linux
(CI) nothing is skipped. Called from conftest.py's ``pytest_runtest_setup``.

Under Windows semantics (``LEADDB_TEST_WINDOWS_SEMANTICS=1``, tests/windows_semantics/) the
project's modules see ``os.name == "nt"`` and ``sys.platform == "win32"``, so these markers skip
there as on Windows; CI deselects them by marker instead (``-m "not posix_only and not
linux_only"``), since nothing may skip in CI."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

WINDOWS_SEMANTICS_ENV = "LEADDB_TEST_WINDOWS_SEMANTICS"
WINDOWS_SEMANTICS_DIR = Path(__file__).resolve().parent / "windows_semantics"


def skip_off_platform(item) -> None:
    for marker in item.iter_markers("posix_only"):
        if os.name == "nt":
            pytest.skip(f"POSIX only: {marker.args[0]}")
    for marker in item.iter_markers("linux_only"):
        if not sys.platform.startswith("linux"):
            pytest.skip(f"Linux only: {marker.args[0]}")


def windows_semantics(environ) -> list[str]:
    """The header line of a run under Windows semantics, or none. A run that asks for them
    without the view installed stops: it would prove nothing."""
    if environ.get(WINDOWS_SEMANTICS_ENV) != "1":
        return []
    if "windows_view" not in sys.modules or not windows_view().installed():
        pytest.exit(
            f"{WINDOWS_SEMANTICS_ENV}=1, but the Windows view is not installed: put tests/windows_semantics "
            "on PYTHONPATH as well (`nox -s tests` does)",
            returncode=4,
        )
    return [
        "windows semantics: the project's modules see os, signal, sys, subprocess as on Windows "
        "(POSIX-only names gone, fcntl/pwd/grp/resource unimportable, platforms.IS_WINDOWS True); "
        "see tests/windows_semantics/windows_view.py"
    ]


def windows_view():
    """tests/windows_semantics/windows_view.py: the module installed (under Windows semantics),
    else loaded without installing anything (its lists, and its views for the view's own tests)."""
    if "windows_view" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "windows_view", WINDOWS_SEMANTICS_DIR / "windows_view.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["windows_view"] = module
        spec.loader.exec_module(module)
    return sys.modules["windows_view"]
