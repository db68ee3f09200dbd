"""The ``posix_only``/``linux_only`` markers (registered in pyproject.toml): a test that needs
a platform's behaviour skips, with its reason, only where that platform is missing; on Linux
(CI) nothing is skipped. Called from conftest.py's ``pytest_runtest_setup``."""

from __future__ import annotations

import os
import sys

import pytest


def skip_off_platform(item) -> None:
    for marker in item.iter_markers("posix_only"):
        if os.name == "nt":
            pytest.skip(f"POSIX only: {marker.args[0]}")
    for marker in item.iter_markers("linux_only"):
        if not sys.platform.startswith("linux"):
            pytest.skip(f"Linux only: {marker.args[0]}")
