"""The Windows-semantics pass's rule (tests/windows_pass.py): every test file is classified, a
file is left out of that pass only when nothing in it can differ under Windows semantics, and
the check itself tells the two apart."""

from __future__ import annotations

import pytest
import windows_pass
from windows_pass import KEPT_UNDER_WINDOWS, PROJECT, SAME_UNDER_WINDOWS, touches, touches_source
from windows_pass import test_file_paths as file_paths


@pytest.mark.parametrize("path", sorted(SAME_UNDER_WINDOWS))
def test_a_file_left_out_of_the_windows_pass_touches_nothing_windows_changes(path):
    assert (PROJECT / path).is_file(), f"{path} is listed in tests/windows_pass.py but does not exist"
    assert touches(path) == [], f"{path} is listed as the same under Windows, but: {touches(path)}"


def test_every_test_file_that_could_be_left_out_is_classified():
    """A file that passes the rule is listed either way, with its reason: a new test file is
    decided, never dropped from the Windows pass by default (one that fails the rule runs)."""
    unclassified = [
        path
        for path in file_paths()
        if not touches(path) and path not in SAME_UNDER_WINDOWS and path not in KEPT_UNDER_WINDOWS
    ]
    assert not unclassified, (
        "classify these in tests/windows_pass.py (SAME_UNDER_WINDOWS, or KEPT_UNDER_WINDOWS with why "
        f"it runs there anyway): {unclassified}"
    )
    assert not set(SAME_UNDER_WINDOWS) & set(KEPT_UNDER_WINDOWS)
    assert all(reason.strip() for reason in {**SAME_UNDER_WINDOWS, **KEPT_UNDER_WINDOWS}.values())


def test_the_windows_pass_keeps_the_docker_tests_and_every_platform_test():
    kept = [path for path in file_paths() if path not in SAME_UNDER_WINDOWS]
    assert [p for p in file_paths() if p.startswith("tests/docker/")]
    assert all(p in kept for p in file_paths() if p.startswith("tests/docker/"))
    for path in ("tests/unit/test_files.py", "tests/unit/test_locks.py", "tests/test_statedir.py"):
        assert path in kept and touches(path), path


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import os\n", "imports os"),
        ("import subprocess\n", "imports subprocess"),
        ("from signal import SIGTERM\n", "imports signal"),
        ("import invoke\n", "imports invoke"),
        ("from leaddb import platforms\n", "imports leaddb.platforms, which reaches"),
        ("from leaddb import statedir\n", "imports leaddb.statedir, which reaches"),
        ("from leaddb.verdict import load\n", "imports leaddb.verdict.load, which reaches platforms"),
        ("from leaddb.backends.local import LocalBackend\n", "LocalBackend, which reaches"),
        ("def test_x(tmp_path):\n    pass\n", "test_x asks for tmp_path"),
        ("def test_x(*, monkeypatch):\n    pass\n", "test_x asks for monkeypatch"),
        ("def windows():\n    return sys.platform\n", "names sys.platform"),
        ("from unit_support import compliant\nfrom dsn_scene import Scene\n", "imports dsn_scene.Scene: "),
    ],
)
def test_the_rule_sees_what_windows_changes(source, found):
    assert any(found in hit for hit in touches_source(source)), touches_source(source)


@pytest.mark.parametrize(
    "source",
    [
        "import psycopg\nimport pytest\n",
        "from leaddb.migrations import split_statements\n",  # text in, statements out
        "from leaddb import stats\n",
        "from leaddb.spec import SPEC_FILENAME, Spec\n",  # the checkout's spec, read as shipped
        "from leaddb.errors import SpecError\n",
        "def test_x(conn):\n    conn.execute('SELECT 1')\n",
    ],
)
def test_the_rule_lets_pure_code_through(source):
    assert touches_source(source) == []


def test_only_listed_files_are_deselected():
    assert windows_pass.deselected(PROJECT / "tests/test_constraints.py")
    assert not windows_pass.deselected(PROJECT / "tests/unit/test_files.py")
    assert not windows_pass.deselected(PROJECT / "tests/docker/test_backend.py")
