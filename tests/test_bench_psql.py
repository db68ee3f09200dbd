"""The bench's psql baseline is the real binary, named, not Debian's Perl wrapper on PATH
(issue 13: both psql baselines named; the wrapper adds ~35 ms per start)."""

from __future__ import annotations

from pathlib import Path

import pytest

from leaddb import psql_baseline

pytestmark = pytest.mark.posix_only("the fake programs are shell scripts")


def program(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8", newline="\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def tools(tmp_path, monkeypatch):
    """A PATH holding only a wrapper psql, and a bindir holding the binary psql."""
    on_path = tmp_path / "path"
    bindir = tmp_path / "lib" / "15" / "bin"
    wrapper = program(on_path / "psql", "exit 0")
    binary = program(bindir / "psql", "exit 0")
    monkeypatch.setenv("PATH", str(on_path))
    return on_path, bindir, wrapper, binary


def test_the_binary_in_pg_configs_bindir_wins_over_psql_on_path(tools):
    on_path, bindir, wrapper, binary = tools
    program(on_path / "pg_config", f'[ "$1" = --bindir ] && echo "{bindir}"')
    assert psql_baseline.psql_program() == str(binary)
    note = psql_baseline.psql_note(str(binary))
    assert str(binary) in note and f"psql on PATH is {wrapper}" in note


def test_without_pg_config_psql_on_path_is_the_baseline_and_said_plainly(tools):
    _, _, wrapper, _ = tools
    assert psql_baseline.psql_program() == str(wrapper)
    assert psql_baseline.psql_note(str(wrapper)) == f"psql baseline: {wrapper}"  # no second name


@pytest.mark.parametrize("answer", ["exit 1", "echo /nowhere/at/all", "echo"])
def test_a_pg_config_without_a_usable_bindir_falls_back_to_path(tools, answer):
    on_path, _, wrapper, _ = tools
    program(on_path / "pg_config", answer)
    assert psql_baseline.psql_program() == str(wrapper)


def test_no_psql_anywhere_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert psql_baseline.psql_program() is None
