"""The task lock: exclusive holders exclude everyone, shared holders only exclusive ones;
re-entrant in one process; refusals name the holder; never follows a planted link."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from leaddb import locks
from leaddb.errors import BackendError

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from leaddb import locks
    with locks.hold(Path(sys.argv[1]), sys.argv[2], "the target", shared=sys.argv[3] == "shared"):
        print("held", flush=True)
        sys.stdin.readline()
    """
)


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock (exclusive or shared) until the test ends."""
    started = []

    def hold(mode: str, task: str = "db.reset"):
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(tmp_path / "task.lock"), task, mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in started:
        process.communicate("\n", timeout=30)


def test_an_exclusive_holder_refuses_every_other_task_naming_itself(tmp_path, holder):
    first = holder("exclusive", "db.reset")
    for shared in (False, True):
        with pytest.raises(BackendError) as refused:
            with locks.hold(tmp_path / "task.lock", "db.apply", "the target", shared=shared):
                pytest.fail("got a lock another process holds exclusively")
        message = str(refused.value)
        assert message.startswith(f"another db.reset of the target is running (pid {first.pid}; lock ")
        assert "next step: wait for it to finish; nothing was changed by this one" in message


def test_shared_holders_admit_each_other_and_refuse_an_exclusive_one(tmp_path, holder):
    holder("shared", "db.apply")
    with locks.hold(tmp_path / "task.lock", "db.reapply", "the target", shared=True):
        pass  # a second apply goes ahead (the server's advisory lock serialises the files)
    with pytest.raises(BackendError, match="another db.(re)?apply of the target is running"):
        with locks.hold(tmp_path / "task.lock", "db.reset", "the target"):
            pytest.fail("a reset got the lock while an apply holds it")


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path, holder):
    path = tmp_path / "task.lock"
    with locks.hold(path, "db.verify", "the target"):
        with locks.hold(path, "db.bench", "the target"):
            with locks.hold(path, "db.reset", "the target"):
                pass
        assert str(path) in locks._held
    assert str(path) not in locks._held
    holder("exclusive")  # released: another process gets it


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="O_NOFOLLOW is POSIX")
def test_a_planted_link_at_the_lock_path_is_never_followed(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("not yours\n", encoding="utf-8", newline="\n")
    (tmp_path / "task.lock").symlink_to(precious)
    with pytest.raises(BackendError, match="cannot open the lock file .*task.lock") as refused:
        with locks.hold(tmp_path / "task.lock", "db.reset", "the target"):
            pytest.fail("followed the link")
    assert "not a link" in str(refused.value)
    assert precious.read_text(encoding="utf-8") == "not yours\n"
