"""Helpers shared by the Docker tests (plain functions; the fixtures are in conftest.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest


def write_migrations(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8", newline="\n")


GOOD_MIGRATIONS = {
    "0001_widgets.sql": (
        "-- widgets\nCREATE TABLE IF NOT EXISTS widgets (\n    id bigint PRIMARY KEY,\n"
        "    name text NOT NULL\n);\n"
    ),
    "0002_widget_index.sql": "CREATE INDEX IF NOT EXISTS widgets_name ON widgets (name);\n",
}


def logs(container) -> str:
    return container.logs().decode("utf-8", "replace")


def wait_for_log(container, text: str, *, count: int = 1, timeout: float = 90) -> str:
    """Until ``text`` appears ``count`` times in the log; fails with the log if the container
    stops first or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        output = logs(container)
        if output.count(text) >= count:
            return output
        container.reload()
        if container.status == "exited":
            pytest.fail(f"container exited before logging {text!r}:\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"{text!r} not logged within {timeout} s:\n{output}")
        time.sleep(0.1)


def wait_for_exit(container, timeout: float = 90) -> int:
    return container.wait(timeout=timeout)["StatusCode"]
