"""verify writes its reports whatever stops it (ARCHITECTURE.md: "always writes"): a step's
expected failure, Ctrl-C, a stop by a signal, an OSError no check expected, a bug; each
recorded as the step it stopped in and why, then raised as before."""

from __future__ import annotations

import errno
import json
import xml.etree.ElementTree as ET
from contextlib import contextmanager

import pytest

from leaddb import cli, verdict, workflow
from leaddb.errors import EXIT_FAILURE, Interrupted, SchemaDrift, Stopped


class _Backend:
    name = "local"

    def __init__(self) -> None:
        self.locks: list[str] = []

    @contextmanager
    def lock(self, task: str, *, shared: bool = False):
        self.locks.append(task)
        yield


def _bug():
    return RuntimeError("a bug in the step")


def _denied():
    return PermissionError(errno.EACCES, "Permission denied", "/somewhere/file")


CASES = {
    "bug": (_bug, RuntimeError, EXIT_FAILURE, "internal error: RuntimeError: a bug in the step", "failed"),
    "os error": (
        _denied,
        PermissionError,
        None,  # file_error's own code
        "cannot use /somewhere/file: Permission denied",
        "failed",
    ),
    "ctrl-c": (
        KeyboardInterrupt,
        KeyboardInterrupt,
        Interrupted.exit_code,
        "interrupted (Ctrl-C)",
        "stopped",
    ),
    "sigterm": (lambda: Stopped("SIGTERM", 15), Stopped, 143, "stopped by SIGTERM", "stopped"),
}


def _verify(tmp_path, monkeypatch, raised):
    ran = []
    backend = _Backend()
    monkeypatch.setattr(workflow, "_select", lambda options: backend)
    monkeypatch.setattr(verdict, "load", lambda project_dir: [])
    monkeypatch.setattr(workflow, "reset", lambda options, held: ran.append(("apply", held)))

    def reapply(options, held):
        assert held is backend and backend.locks == ["db.verify"]  # verify's one lock, held for the step
        ran.append("reapply")
        raise raised()

    monkeypatch.setattr(workflow, "reapply", reapply)
    monkeypatch.setattr(workflow, "introspect", lambda options, held: ran.append("introspect"))
    options = workflow.Options(backend="local", project_dir=tmp_path)
    return ran, options


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_whatever_stops_a_step_the_reports_say_which_and_why(case, tmp_path, monkeypatch):
    raised, kind, code, why, how = CASES[case]
    ran, options = _verify(tmp_path, monkeypatch, raised)
    with pytest.raises(kind) as stopped:
        workflow.verify(options, report_dir=tmp_path / "reports")
    assert [r if isinstance(r, str) else r[0] for r in ran] == ["apply", "reapply"]  # no later step ran
    document = json.loads((tmp_path / "reports" / "verify.json").read_text(encoding="utf-8"))
    assert document["ok"] is False and document["backend"] == "local"
    assert [(s["name"], s["ok"]) for s in document["steps"]] == [("apply", True), ("reapply", False)]
    failed = document["steps"][1]
    assert failed["message"].startswith(why), failed
    assert failed["exit_code"] == (
        code if code is not None else workflow.file_error(raised(), "use").exit_code
    )
    junit = ET.parse(tmp_path / "reports" / "verify.junit.xml").getroot()
    assert junit.find("testcase[@name='reapply']/failure").attrib["message"].startswith(why)
    assert stopped.value.__notes__[-1] == (
        f"verify {how} in its reapply step, which reports/verify.json and reports/verify.junit.xml "
        f"record as {how}; no later step ran"
    )


def test_an_expected_failure_is_still_reported_as_before(tmp_path, monkeypatch):
    ran, options = _verify(tmp_path, monkeypatch, lambda: SchemaDrift("1 difference", hint="fix it"))
    with pytest.raises(SchemaDrift):
        workflow.verify(options, report_dir=tmp_path / "reports")
    document = json.loads((tmp_path / "reports" / "verify.json").read_text(encoding="utf-8"))
    assert document["steps"][1]["exit_code"] == SchemaDrift.exit_code


def test_the_bug_message_at_the_door_says_where_the_reports_are(tmp_path, monkeypatch):
    ran, options = _verify(tmp_path, monkeypatch, _bug)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the bug report file

    @cli.boundary
    def verify():
        workflow.verify(options, report_dir=tmp_path / "reports")

    with pytest.raises(Exception) as door:
        verify()
    assert door.value.code == EXIT_FAILURE
    message = str(door.value.message)
    assert message.startswith(
        "internal error in db.verify: RuntimeError: a bug in the step\n  verify failed in"
    )
    assert "reports/verify.json and reports/verify.junit.xml record as failed" in message
