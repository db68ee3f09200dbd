"""The Windows-semantics pass's rule (tests/windows_pass.py): every test file is classified, a
file is left out of that pass only when nothing in it can differ under Windows semantics, and
the check itself tells the two apart."""

from __future__ import annotations

import ast

import pytest
import windows_pass
from windows_pass import (
    KEPT_UNDER_WINDOWS,
    PROJECT,
    SAME_UNDER_WINDOWS,
    one_test_touches,
    touches,
    touches_source,
)
from windows_pass import one_test_touches_source as planted_touches
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


def _tests_of(path: str) -> list[ast.FunctionDef]:
    tree = ast.parse((PROJECT / path).read_text(encoding="utf-8"))
    return [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]


def test_the_windows_pass_keeps_the_docker_tests_and_every_platform_test():
    kept = [path for path in file_paths() if path not in SAME_UNDER_WINDOWS]
    docker = [p for p in file_paths() if p.startswith("tests/docker/")]
    assert docker and all(p in kept for p in docker)
    for path in docker:  # every one of them, test by test
        assert all(one_test_touches(path, test.name) for test in _tests_of(path)), path
    for path in ("tests/unit/test_files.py", "tests/unit/test_locks.py", "tests/test_statedir.py"):
        assert path in kept and touches(path), path
    for path, test in [
        ("tests/unit/test_locks.py", "test_an_exclusive_holder_refuses_every_other_task_naming_itself"),
        ("tests/test_statedir.py", "test_a_checkout_is_gone_when_nothing_or_no_directory_is_at_its_path"),
    ]:
        assert not windows_pass.deselected(PROJECT / path, test), (path, test)


def test_the_session_server_fixtures_run_under_windows_semantics_in_kept_tests():
    """SERVER_FIXTURES are not followed test by test: the suite sets them up under Windows semantics
    for the kept tests that ask for them. So some kept test must ask for the server and for a fresh
    database (``conn`` is psycopg's connection to one, ``keeper`` and ``template_db`` come with them)."""
    asked = {name: [] for name in ("server", "fresh_db")}
    for path in file_paths():
        for test in _tests_of(path):
            for argument in test.args.args:
                if argument.arg in asked and not windows_pass.deselected(PROJECT / path, test.name):
                    asked[argument.arg].append(f"{path}::{test.name}")
    assert all(asked.values()), asked


PLANTED_TESTS = {
    # a helper of its file that stops a process
    "helper": (
        "import os\n\ndef stop(pid):\n    os.kill(pid, 15)\n\ndef test_x():\n    stop(1)\n",
        "names os",
    ),
    # a fixture of its file that hands it a directory
    "fixture": (
        "import pytest\n\n@pytest.fixture\ndef home(tmp_path):\n    return tmp_path\n\n"
        "def test_x(home):\n    pass\n",
        "home asks for tmp_path",
    ),
    "leaddb function": ("from leaddb.migrations import read\n\ndef test_x():\n    read\n", "reaches"),
    "leaddb module": ("from leaddb import migrations\n\ndef test_x():\n    migrations.read\n", "reaches"),
    "module passed bare": (
        "from leaddb import migrations\n\ndef test_x():\n    getattr(migrations, 'split_statements')\n",
        "calls leaddb.migrations, which reaches",
    ),
    "parametrized": (
        "import pytest\nfrom leaddb import statedir\n\n@pytest.mark.parametrize('f', [statedir.user_dir])\n"
        "def test_x(f):\n    f()\n",
        "reaches",
    ),
    "fixture by name": ("def test_x(request):\n    request.getfixturevalue('tmp_path')\n", "by its name"),
    "unknown fixture": ("def test_x(somewhere):\n    pass\n", "a fixture this rule cannot find"),
    "autouse": (
        "import pytest\nimport subprocess\n\n@pytest.fixture(autouse=True)\ndef child():\n"
        "    subprocess.run(['true'])\n\ndef test_x():\n    pass\n",
        "names subprocess",
    ),
    "test helper module": ("from workspace import Workspace\n\ndef test_x():\n    Workspace\n", "names"),
    "signals": ("from leaddb import cli\n\ndef test_x():\n    cli.stop_signals()\n", "signal"),
    "a constant of its file": (
        "from leaddb import locks\nHOLD = locks.hold\n\ndef test_x():\n    HOLD\n",
        "reaches",
    ),
}


def test_a_name_windows_lacks_counts_when_read_by_its_string():
    """Library code such as ``NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)`` names it too."""
    import ast

    assert "os.O_NOFOLLOW" in windows_pass._hits(ast.parse("NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)"))
    assert "os.setsid" in windows_pass._hits(ast.parse("hasattr(os, 'setsid')"))
    assert not windows_pass._hits(ast.parse("getattr(os, 'getcwd')"))


@pytest.mark.parametrize("case", sorted(PLANTED_TESTS))
def test_a_test_that_reaches_what_windows_changes_is_kept(case):
    source, found = PLANTED_TESTS[case]
    hits = planted_touches(source, "test_x")
    assert hits and any(found in hit for hit in hits), hits


@pytest.mark.parametrize(
    "source",
    [
        "def test_x(conn):\n    conn.execute('SELECT 1')\n",  # SQL through psycopg
        "from leaddb.migrations import split_statements\n\ndef test_x():\n    split_statements('')\n",
        "from leaddb import migrations\n\ndef test_x():\n    migrations.split_statements('')\n",
        # test_y's os is not test_x's
        "import os\n\ndef test_x():\n    pass\n\ndef test_y():\n    os.getpid()\n",
        "import pytest\n\n@pytest.mark.parametrize('n', [1, 2])\ndef test_x(n, capsys):\n    print(n)\n",
    ],
)
def test_a_test_that_reaches_nothing_windows_changes_is_left_out(source):
    assert planted_touches(source, "test_x") == ()


def test_a_name_windows_lacks_in_library_code_is_seen():
    """A POSIX-only name planted in library code makes every test that reaches it run under
    Windows semantics (where it fails), whatever module it hides in."""
    for code, name in [
        ("import os\n\ndef f():\n    return os.geteuid()\n", "os.geteuid"),
        ("import shutil\n\ndef f(p):\n    shutil.chown(p, 'x')\n", "shutil.chown"),
        ("import os\n\ndef f():\n    return os.getloadavg()\n", "os.getloadavg"),
    ]:
        assert name in windows_pass._hits(ast.parse(code)), code
    assert not windows_pass._hits(ast.parse("import os\n\ndef f():\n    return os.getpid(), os.sep\n"))


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


def test_listed_files_are_deselected_whole_and_others_test_by_test():
    assert windows_pass.deselected(PROJECT / "tests/test_constraints.py")
    assert not windows_pass.deselected(PROJECT / "tests/unit/test_files.py")
    assert not windows_pass.deselected(PROJECT / "tests/docker/test_backend.py")
    # a statistic on numbers in memory, in a file whose other tests reach the platform
    assert windows_pass.deselected(
        PROJECT / "tests/unit/test_stats.py", "test_a_summary_holds_its_values_figures"
    )
    assert not windows_pass.deselected(PROJECT / "tests/unit/test_paths.py", "test_x")  # KEPT_UNDER_WINDOWS
