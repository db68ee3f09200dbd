"""The local cluster's one way to run a PostgreSQL program (initdb, pg_ctl): a timeout or a
program that cannot be run is one BackendError; and the server user, asked once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from leaddb import permissions, platforms
from leaddb.backends import cluster
from leaddb.errors import BackendError


def test_a_program_that_runs_too_long_is_one_message_with_the_log_tail():
    with pytest.raises(BackendError) as late:
        cluster.run_program(
            [sys.executable, "-c", "import time; time.sleep(30)"],
            "initdb",
            timeout=0.5,
            late="initdb did not finish within 0 s",
            tail=lambda: "\n  server log: the tail",
            stdin=subprocess.DEVNULL,
        )
    assert str(late.value) == (
        "initdb did not finish within 0 s\n  server log: the tail\n"
        "  next step: see the server log above; `invoke db.down` removes the cluster"
    )


def test_a_program_that_cannot_be_run_is_one_message_naming_it(tmp_path):
    program = tmp_path / "pg_ctl"
    program.write_bytes(b"")
    program.chmod(0o600)  # not executable
    with pytest.raises(BackendError) as refused:
        cluster.run_program([str(program)], "starting the server", timeout=5, late="", tail=lambda: "")
    assert str(refused.value).startswith(f"starting the server: cannot run {program}: ")


def test_both_callers_go_through_it(monkeypatch):
    calls = []
    monkeypatch.setattr(cluster, "run_program", lambda argv, what, **kw: calls.append(what) or _done())
    cluster.run_captured(["initdb"], "initdb", 5, lambda: "")
    assert calls == ["initdb"]


def _done():
    return subprocess.CompletedProcess([], 0, "", "")


def test_the_server_user_is_required_only_as_root(monkeypatch):
    monkeypatch.setattr(platforms, "running_as_root", lambda: False)
    assert permissions.server_ids(required=True) is None
    monkeypatch.setattr(platforms, "running_as_root", lambda: True)
    monkeypatch.setattr(platforms, "user_ids", lambda name: None)
    assert permissions.server_ids() is None
    with pytest.raises(
        BackendError, match="the server must run as the 'postgres' user, which does not exist"
    ):
        permissions.server_ids(required=True)
    monkeypatch.setattr(platforms, "user_ids", lambda name: (70, 71))
    assert permissions.server_ids(required=True) == (70, 71)
