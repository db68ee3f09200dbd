"""``posix_only``/``linux_only`` skip a test only where its platform is missing, with the reason;
on Linux (CI) they never skip."""

from __future__ import annotations

import os
import sys

import pytest
from platform_marks import skip_off_platform


class Item:
    def __init__(self, *marks) -> None:
        self.marks = [m.mark for m in marks]

    def iter_markers(self, name):
        return [m for m in self.marks if m.name == name]


POSIX = Item(pytest.mark.posix_only("chmod 0o500 makes a directory read-only"))
LINUX = Item(pytest.mark.linux_only("reads /proc"))


def _skip_reason(item, monkeypatch, os_name: str, platform: str) -> str | None:
    with monkeypatch.context() as patched:
        patched.setattr(os, "name", os_name)
        patched.setattr(sys, "platform", platform)
        try:
            skip_off_platform(item)
        except pytest.skip.Exception as skipped:
            return skipped.msg
    return None


def test_on_linux_nothing_is_skipped(monkeypatch):
    assert _skip_reason(POSIX, monkeypatch, "posix", "linux") is None
    assert _skip_reason(LINUX, monkeypatch, "posix", "linux") is None


def test_on_windows_each_skips_with_its_reason(monkeypatch):
    assert (
        _skip_reason(POSIX, monkeypatch, "nt", "win32")
        == "POSIX only: chmod 0o500 makes a directory read-only"
    )
    assert _skip_reason(LINUX, monkeypatch, "nt", "win32") == "Linux only: reads /proc"


def test_elsewhere_only_what_needs_linux_skips(monkeypatch):
    assert _skip_reason(POSIX, monkeypatch, "posix", "darwin") is None
    assert _skip_reason(LINUX, monkeypatch, "posix", "darwin") == "Linux only: reads /proc"
