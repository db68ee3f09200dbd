"""The lock model for read tasks (ARCHITECTURE.md): introspect, drift, status, dump and erd hold
the backend's lock in shared mode from before they start the server to their end, so a read
never starts a stopped cluster, makes a scratch database or reads a catalog while a reset runs:
it is refused at once, naming the reset. Reads go ahead beside applies and other reads (POSIX;
Windows' msvcrt has no shared mode, leaddb/locks.py); a reset is refused while a read runs.
verify holds one exclusive lock for its whole pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_locks import holder  # noqa: F401 - the fixture: another process holding the lock

from leaddb import locks, platforms, verdict, workflow
from leaddb.errors import BackendError


class _Started(Exception):
    """The stand-in's start: the read got past its lock (nothing further is needed here)."""


class _Backend:
    name = "local"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[str] = []

    def lock(self, task: str, *, shared: bool = False):
        self.calls.append(f"lock {task} {'shared' if shared else 'exclusive'}")
        return locks.hold(self.path, task, "the target", shared=shared)

    def start(self) -> None:
        self.calls.append("start")
        raise _Started

    def reset(self, *args, **kwargs):
        self.calls.append("reset")
        raise _Started


READS = {
    "introspect": ("db.introspect", lambda o: workflow.introspect(o)),
    "drift": ("db.drift", lambda o: workflow.drift_check(o)),
    "status": ("db.status", lambda o: workflow.status(o)),
    "status --detail": ("db.status", lambda o: workflow.status(o, detail=True)),
    "dump": ("db.dump", lambda o: workflow.dump(o)),
    "erd": ("db.erd", lambda o: workflow.diagram(o)),
}


@pytest.fixture
def scene(tmp_path, monkeypatch, holder):  # noqa: F811 - the imported fixture
    """A stand-in backend whose lock is the real file lock ``holder`` (another process) holds."""
    backend = _Backend(tmp_path / "task.lock")  # the file test_locks' holder locks
    monkeypatch.setattr(workflow, "_select", lambda options: backend)
    monkeypatch.setattr(verdict, "load", lambda project_dir: [])
    return (
        backend,
        lambda task, mode: holder(mode, task),
        workflow.Options(backend="local", project_dir=tmp_path),
    )


@pytest.mark.parametrize("read", READS, ids=list(READS))
def test_a_read_during_a_reset_is_refused_before_it_starts_anything(read, scene):
    backend, hold, options = scene
    task, run = READS[read]
    reset = hold("db.reset", "exclusive")
    with pytest.raises(BackendError) as refused:
        run(options)
    assert str(refused.value).startswith(f"another db.reset of the target is running (pid {reset.pid}; lock ")
    assert backend.calls == [f"lock {task} shared"]  # never started: a stopped cluster stays stopped


@pytest.mark.parametrize("read", READS, ids=list(READS))
def test_a_read_goes_ahead_beside_an_apply(read, scene):
    backend, hold, options = scene
    task, run = READS[read]
    hold("db.apply", "shared")
    if platforms.IS_WINDOWS:  # pragma: no cover - msvcrt has no shared mode: refused, not queued
        with pytest.raises(BackendError):
            run(options)
        return
    with pytest.raises(_Started):
        run(options)
    assert backend.calls == [f"lock {task} shared", "start"]


@pytest.mark.posix_only("flock's shared mode (msvcrt has none)")
def test_a_reset_is_refused_while_a_read_runs(scene):
    backend, hold, options = scene
    drift = hold("db.drift", "shared")
    with pytest.raises(BackendError) as refused:
        workflow.reset(options)
    assert str(refused.value).startswith(f"another db.drift of the target is running (pid {drift.pid}; lock ")
    assert backend.calls == ["lock db.reset exclusive"]  # nothing reset


def test_verify_holds_one_exclusive_lock_for_its_whole_pipeline_and_records_a_refusal(scene, tmp_path):
    import json

    backend, hold, options = scene
    drift = hold("db.drift", "shared")
    with pytest.raises(BackendError):
        workflow.verify(options, report_dir=tmp_path / "reports")
    assert backend.calls == ["lock db.verify exclusive"]  # no step ran
    document = json.loads((tmp_path / "reports" / "verify.json").read_text(encoding="utf-8"))
    (step,) = document["steps"]
    assert step["name"] == "lock" and not step["ok"]
    assert step["message"].startswith(f"another db.drift of the target is running (pid {drift.pid}; ")
