"""No module uses a name Windows lacks, read with Python's own parser (``ast``), not grep: the
library (``leaddb/``), ``tasks.py``, ``noxfile.py``, ``benchmarks/`` and the tests.

A POSIX-only name is one Windows' CPython 3.11 does not have (the lists are the Windows view's,
``tests/windows_semantics/windows_view.py``, which takes the same names away at run time):
``os.*`` outside Windows' ``os`` (``geteuid``, ``fork``, ``setsid``, ``killpg``, ``chown``,
``fchmod``, ``O_NOFOLLOW``, ``getgrouplist``...), ``signal.*`` outside Windows' signals
(``SIGKILL``, ``SIGHUP``, ``SIGQUIT``...), ``shutil.chown``, ``time.tzset``, ``select.poll``; the
modules ``fcntl``, ``pwd``, ``grp``, ``resource``...; and the ``subprocess`` arguments Windows
refuses (``preexec_fn``, ``user``, ``group``, ``extra_groups``, ``pass_fds``). Also a Docker
``Mount(type="bind")``: Docker Desktop takes a bind mount in the binds form only, with the
source from ``platforms.docker_mount_source``.

Allowed only in ``leaddb/platforms.py`` (every platform difference lives there),
``leaddb/locks.py`` (``flock`` beside ``msvcrt``), and inside the body of a test, or a helper
only such tests call, marked ``posix_only``/``linux_only`` (in its decorators, its class's, or
the module's ``pytestmark``). What runs when a module is imported (its top level, decorators,
default values, class bodies) is never exempt: it breaks collection on Windows for every test.
``getattr(os, "O_NOFOLLOW", 0)`` and ``hasattr(os, ...)`` name nothing and are fine.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from platform_marks import windows_view

PROJECT = Path(__file__).resolve().parent.parent
EXEMPT = {
    "leaddb/platforms.py": "every difference between Windows and POSIX, in one place",
    "leaddb/locks.py": "flock on POSIX beside msvcrt on Windows, chosen by platforms.IS_WINDOWS",
}
EXEMPT_DIRS = {"tests/windows_semantics": "the simulator of Windows semantics itself: runs on Linux only"}
MARKERS = {"posix_only", "linux_only"}
TRACKED = {"os", "signal", "shutil", "time", "select", "subprocess"}
SUBPROCESS_CALLS = {"Popen", "run", "call", "check_call", "check_output"}


NAMES = windows_view()  # its lists: what Windows lacks


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    name: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.name}"


def _is_marker(node: ast.expr, aliases: set[str]) -> bool:
    """``pytest.mark.posix_only(...)``, ``pytest.mark.linux_only``, or a name bound to one."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr in MARKERS
    return isinstance(node, ast.Name) and node.id in aliases


def _marks_in(node: ast.expr | None, aliases: set[str]) -> bool:
    if node is None:
        return False
    return any(_is_marker(n, aliases) for n in ast.walk(node) if isinstance(n, ast.expr))


class _Finder(ast.NodeVisitor):
    def __init__(self, path: str, tree: ast.Module) -> None:
        self.path = path
        self.found: list[Violation] = []
        self.modules: dict[str, str] = {}  # local name -> tracked module
        self.from_subprocess: set[str] = set()  # names imported from subprocess
        self.mount_names: set[str] = set()
        self.marker_aliases: set[str] = set()
        self.exempt = 0  # depth of marked function bodies
        self.module_marked = False
        for node in tree.body:  # module-level names bound to a marker, and pytestmark
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
            ):
                target = node.targets[0].id
                if target == "pytestmark":
                    self.module_marked = _marks_in(node.value, self.marker_aliases)
                elif _is_marker(node.value, set()):
                    self.marker_aliases.add(target)
        self.marked_classes: list[bool] = []
        # module-level functions marked posix_only/linux_only: an unmarked test calling one fails
        # on Windows as surely as one using the names they use (a helper called by another helper
        # is not followed: its callers' parameters may be marked instead)
        self.in_test = False
        self.marked_helpers = {
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and not node.name.startswith("test")
            and any(_is_marker(d, self.marker_aliases) for d in node.decorator_list)
        }

    def flag(self, node: ast.AST, name: str) -> None:
        if not self.exempt:
            self.found.append(Violation(self.path, node.lineno, name))

    # -- imports ---------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.partition(".")[0]
            if top in NAMES.UNIMPORTABLE:
                self.flag(node, f"import {alias.name}")
            if top in TRACKED and alias.asname is None:  # `import os.path` binds os too
                self.modules[top] = top
            elif top in TRACKED and "." not in alias.name:  # `import os as _os`
                self.modules[alias.asname] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        top = module.partition(".")[0]
        if node.level == 0 and top in NAMES.UNIMPORTABLE:
            self.flag(node, f"from {module} import ...")
        for alias in node.names:
            if node.level == 0 and module in TRACKED and NAMES.posix_only(module, alias.name):
                self.flag(node, f"from {module} import {alias.name}")
            if node.level == 0 and module == "subprocess" and alias.name in SUBPROCESS_CALLS:
                self.from_subprocess.add(alias.asname or alias.name)
            if alias.name == "Mount":
                self.mount_names.add(alias.asname or "Mount")

    # -- uses ------------------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name):
            module = self.modules.get(node.value.id)
            if module and NAMES.posix_only(module, node.attr):
                self.flag(node, f"{module}.{node.attr}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in self.marked_helpers and self.in_test:
            self.flag(node, f"{func.id}() (a helper marked posix_only/linux_only)")
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and self.modules.get(func.value.id) == "subprocess"
            and func.attr in SUBPROCESS_CALLS
        ) or (isinstance(func, ast.Name) and func.id in self.from_subprocess):
            for keyword in node.keywords:
                if keyword.arg in (*NAMES.REFUSED_ARGUMENTS, "pass_fds"):
                    self.flag(keyword.value, f"subprocess {keyword.arg}=")
        if (
            isinstance(func, ast.Name)
            and func.id in self.mount_names
            or isinstance(func, ast.Attribute)
            and func.attr == "Mount"
        ):
            for keyword in node.keywords:
                if (
                    keyword.arg == "type"
                    and isinstance(keyword.value, ast.Constant)
                    and keyword.value.value == "bind"
                ):
                    self.flag(
                        node,
                        'Mount(type="bind") (Docker Desktop: the binds form, platforms.docker_mount_source)',
                    )
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "import_module"
            or isinstance(func, ast.Name)
            and func.id == "__import__"
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                if node.args[0].value.partition(".")[0] in NAMES.UNIMPORTABLE:
                    self.flag(node, f"import {node.args[0].value}")
        self.generic_visit(node)

    # -- where code runs -------------------------------------------------------------------
    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:  # run at import
            self.visit(decorator)
        self.visit(node.args)  # defaults: evaluated at import
        if node.returns:
            self.visit(node.returns)
        marked = (
            self.module_marked
            or any(_is_marker(d, self.marker_aliases) for d in node.decorator_list)
            or any(self.marked_classes)
        )
        self.exempt += marked
        outer, self.in_test = self.in_test, self.in_test or node.name.startswith("test")
        for statement in node.body:
            self.visit(statement)
        self.exempt -= marked
        self.in_test = outer

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        for base in node.bases:
            self.visit(base)
        self.marked_classes.append(any(_is_marker(d, self.marker_aliases) for d in node.decorator_list))
        for statement in node.body:  # the class body runs at import; its methods' bodies do not
            self.visit(statement)
        self.marked_classes.pop()


def violations(source: str, path: str) -> list[Violation]:
    tree = ast.parse(source, filename=path)
    finder = _Finder(path, tree)
    finder.visit(tree)
    return finder.found


def project_files() -> list[Path]:
    files = [PROJECT / "tasks.py", PROJECT / "noxfile.py"]
    for directory in ("leaddb", "benchmarks", "tests"):
        files += sorted((PROJECT / directory).rglob("*.py"))
    return [
        f
        for f in files
        if f.relative_to(PROJECT).as_posix() not in EXEMPT
        and not any(f.relative_to(PROJECT).as_posix().startswith(d + "/") for d in EXEMPT_DIRS)
    ]


def test_no_module_uses_a_name_windows_lacks():
    found = []
    for path in project_files():
        relative = path.relative_to(PROJECT).as_posix()
        found += violations(path.read_text(encoding="utf-8"), relative)
    assert not found, (
        "POSIX-only names, which Windows lacks (collection or the task fails there):\n  "
        + "\n  ".join(map(str, found))
        + "\n  next step: move the use into a function of leaddb/platforms.py; in a test that truly "
        "needs POSIX, mark the test (and any helper only it calls) "
        '@pytest.mark.posix_only("why") or linux_only, and keep module-level code free of them'
    )


def test_the_check_reads_every_kind_of_module():
    paths = {p.relative_to(PROJECT).as_posix() for p in project_files()}
    assert {"tasks.py", "noxfile.py", "leaddb/statedir.py", "leaddb/backends/local.py"} <= paths
    assert {
        "benchmarks/peers.py",
        "tests/conftest.py",
        "tests/test_pristine.py",
        "tests/unit/test_rules.py",
    } <= paths
    assert not paths & set(EXEMPT)
    assert not any(p.startswith("tests/windows_semantics/") for p in paths)


PLANTED = {
    "a marked helper called from an unmarked test": (
        "import pytest\nposix = pytest.mark.posix_only('fork')\n\n@posix\ndef helper():\n    pass\n"
        "\ndef test_f():\n    helper()\n",
        ["helper() (a helper marked posix_only/linux_only)"],
    ),
    "module-level signal": ("import signal\nCASES = [signal.SIGKILL]\n", ["signal.SIGKILL"]),
    "library geteuid": ("import os\n\ndef f():\n    return os.geteuid() == 0\n", ["os.geteuid"]),
    "alias": ("import os as _os\n\ndef f(p):\n    _os.lchown(p, 0, 0)\n", ["os.lchown"]),
    "from import": ("from os import getuid, getpid\n", ["from os import getuid"]),
    "posix module": ("def f():\n    import pwd\n", ["import pwd"]),
    "from posix module": ("from fcntl import flock\n", ["from fcntl import ..."]),
    "import_module": ("import importlib\nimportlib.import_module('resource')\n", ["import resource"]),
    "O_NOFOLLOW": ("import os\nFLAGS = os.O_RDONLY | os.O_NOFOLLOW\n", ["os.O_NOFOLLOW"]),
    "killpg setsid fork": (
        "import os\n\ndef f(p):\n    os.killpg(p, 2)\n    os.setsid()\n    os.fork()\n",
        ["os.killpg", "os.setsid", "os.fork"],
    ),
    "shutil.chown": ("import shutil\n\ndef f(p):\n    shutil.chown(p, 'postgres')\n", ["shutil.chown"]),
    "preexec_fn": (
        "import subprocess\nsubprocess.Popen(['x'], preexec_fn=print, user='postgres')\n",
        ["subprocess preexec_fn=", "subprocess user="],
    ),
    "bind mount": (
        "from docker.types import Mount\nM = Mount('/t', '/s', type='bind')\n",
        ['Mount(type="bind") (Docker Desktop: the binds form, platforms.docker_mount_source)'],
    ),
    "decorator of a marked test": (
        "import os, pytest\n\n@pytest.mark.posix_only('x')\n"
        "@pytest.mark.skipif(os.geteuid() != 0, reason='r')\ndef test_f():\n    pass\n",
        ["os.geteuid"],
    ),
    "module level of a posix-marked module": (
        "import signal, pytest\npytestmark = pytest.mark.posix_only('x')\nKILL = signal.SIGKILL\n",
        ["signal.SIGKILL"],
    ),
    "class body of a marked class": (
        "import signal, pytest\n\n@pytest.mark.linux_only('x')\nclass TestX:\n    KILL = signal.SIGHUP\n",
        ["signal.SIGHUP"],
    ),
    "default value": ("import os\n\ndef f(uid=os.getuid()):\n    pass\n", ["os.getuid"]),
}
ALLOWED = {
    "getattr": "import os\nFLAGS = os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0)\n",
    "hasattr": "import os\nROOT = hasattr(os, 'geteuid')\n",
    "windows signals": "import signal\nS = (signal.SIGINT, signal.SIGTERM, signal.SIG_DFL, signal.signal)\n",
    "common os": "import os\nos.getpid(); os.kill(1, 15); os.replace('a', 'b'); os.environ.get('X')\n",
    "marked test": (
        "import os, pytest\n\n@pytest.mark.posix_only('x')\ndef test_f():\n    assert os.geteuid() >= 0\n"
    ),
    "marked helper by alias": (
        "import os, pytest\nposix = pytest.mark.posix_only('fork')\n\n@posix\ndef helper():\n    os.fork()\n"
    ),
    "method of a marked class": (
        "import signal, pytest\n\n@pytest.mark.linux_only('x')\nclass TestX:\n"
        "    def test_f(self):\n        signal.SIGKILL\n"
    ),
    "posix-marked module, in a test": (
        "import signal, pytest\npytestmark = [pytest.mark.docker, pytest.mark.posix_only('x')]\n\n"
        "def test_f():\n    signal.SIGQUIT\n"
    ),
    "a marked helper called from a marked test": (
        "import os, pytest\nposix = pytest.mark.posix_only('fork')\n\n@posix\ndef helper():\n    os.fork()\n"
        "\n@posix\ndef test_f():\n    helper()\n"
    ),
    "a local variable named like nothing tracked": "def f(sig):\n    return sig.SIGKILL\n",
    "volume mount": "from docker.types import Mount\nM = Mount('/t', 'v', type='volume')\n",
}


@pytest.mark.parametrize("case", PLANTED, ids=list(PLANTED))
def test_a_planted_use_is_found(case):
    source, expected = PLANTED[case]
    assert [v.name for v in violations(source, "planted.py")] == expected


@pytest.mark.parametrize("case", ALLOWED, ids=list(ALLOWED))
def test_what_windows_has_or_a_marked_test_uses_is_allowed(case):
    assert violations(ALLOWED[case], "allowed.py") == []


def test_a_use_planted_in_a_real_library_module_is_found_at_its_line():
    source = (PROJECT / "leaddb" / "statedir.py").read_text(encoding="utf-8")
    planted = source + textwrap.dedent(
        """

        def planted() -> bool:
            return os.geteuid() == 0
        """
    )
    line = planted.splitlines().index("    return os.geteuid() == 0") + 1
    assert violations(source, "leaddb/statedir.py") == []
    assert violations(planted, "leaddb/statedir.py") == [Violation("leaddb/statedir.py", line, "os.geteuid")]


# -- which platform it is: asked of leaddb/platforms.py only ------------------------------------

PLATFORM_FACTS = {"platforms.IS_WINDOWS", "IS_WINDOWS", "sys.platform", "os.name", "platform.system"}
ASKS_WHICH_PLATFORM = {
    "leaddb/platforms.py": "it is where the answer lives",
    "leaddb/locks.py": "flock beside msvcrt (see EXEMPT)",
}


def platform_questions(source: str) -> list[tuple[int, str]]:
    """Where ``source`` asks which platform it runs on (``platforms.IS_WINDOWS``,
    ``sys.platform``, ``os.name``, ``platform.system``) rather than a named fact of
    ``leaddb/platforms.py`` (``owners_guard_files()``, ``server_sockets_are_files()``...)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            name = f"{node.value.id}.{node.attr}"
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            name = node.id
        else:
            continue
        if name in PLATFORM_FACTS:
            found.append((node.lineno, name))
    return found


def test_only_platforms_and_locks_ask_which_platform_the_library_runs_on():
    """A platform difference is a named function of ``leaddb/platforms.py`` (ARCHITECTURE.md:
    "every difference between Windows and POSIX, in one place"); the rest of the library asks
    it that fact, never which platform it is."""
    found = [
        f"{path.relative_to(PROJECT).as_posix()}:{line}: {name}"
        for path in sorted([*PROJECT.glob("leaddb/**/*.py"), PROJECT / "tasks.py"])
        if path.relative_to(PROJECT).as_posix() not in ASKS_WHICH_PLATFORM
        for line, name in platform_questions(path.read_text(encoding="utf-8"))
    ]
    assert not found, "ask a named fact of leaddb/platforms.py instead:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "from leaddb import platforms\nsocket_dir = '' if platforms.IS_WINDOWS else 'run'\n",
        "import sys\nPOSIX = sys.platform != 'win32'\n",
        "import os\nif os.name == 'nt':\n    pass\n",
        "from leaddb.platforms import IS_WINDOWS\nx = not IS_WINDOWS\n",
    ],
)
def test_a_planted_platform_question_is_found(source):
    assert platform_questions(source)
