"""Only ``leaddb/backends/`` knows how backends differ: the rest of the code asks a backend's
capabilities, never its name, its attributes or its class, and applies through it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from leaddb.backends.base import Backend

PROJECT = Path(__file__).resolve().parent.parent
OUTSIDE = sorted(
    p
    for p in [*PROJECT.glob("leaddb/**/*.py"), PROJECT / "tasks.py", PROJECT / "noxfile.py"]
    if "backends" not in p.relative_to(PROJECT).parts
)
FORBIDDEN = {
    "tests a backend's name": re.compile(r"\.name\s*[!=]=|[!=]=\s*\w*backend\w*\.name"),
    "tests a backend's attributes": re.compile(r"hasattr\(\s*\w*backend"),
    "imports a backend class or module": re.compile(
        r"from leaddb\.backends\.(local|dsn|docker)\b|import leaddb\.backends\.(local|dsn|docker)\b"
        r"|\b(LocalBackend|DockerBackend|DsnBackend)\b"
    ),
    "reaches into a backend": re.compile(r"backend\.(client|cluster|service|spec|resources|_\w+)\b"),
    "applies around the backend": re.compile(r"\brunner\.apply\("),
}


def test_there_is_code_to_check():
    names = {p.name for p in OUTSIDE}
    assert {"workflow.py", "bench.py", "fast.py", "drift.py", "tasks.py"} <= names


@pytest.mark.parametrize("rule", sorted(FORBIDDEN))
def test_no_code_outside_the_backends_knows_which_backend_it_holds(rule):
    found = [
        f"{path.relative_to(PROJECT).as_posix()}:{number}: {line.strip()}"
        for path in OUTSIDE
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FORBIDDEN[rule].search(line)
    ]
    assert not found, f"{rule}:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        'if backend.name == "docker":',
        'fast = backend.name != "dsn"',
        'bare = backend.without_init_files() if hasattr(backend, "without_init_files") else None',
        "from leaddb.backends.docker import DockerBackend",
        'info["docker"] = backend.client.version()',
        "runner.apply(backend.conninfo(template), migrations)",
    ],
)
def test_the_rules_catch_what_the_seam_replaced(line):
    assert any(rule.search(line) for rule in FORBIDDEN.values()), line


def test_every_backend_states_its_capabilities_and_implements_the_interface():
    from leaddb.backends.docker import DockerBackend
    from leaddb.backends.dsn import DsnBackend
    from leaddb.backends.local import LocalBackend

    for cls in (LocalBackend, DockerBackend, DsnBackend):
        assert issubclass(cls, Backend)
        assert not getattr(cls, "__abstractmethods__", None), cls
        assert cls.capabilities.owns_server is (cls is not DsnBackend)
    assert DockerBackend.capabilities.floor_boot and not LocalBackend.capabilities.floor_boot


def test_every_registered_backend_is_one_line_and_its_class_says_the_rest():
    """Adding a backend is its module plus one ``REGISTERED`` line: ``NAMES``, ``select`` and
    the Ctrl-C message's words come from that line and the class."""
    from leaddb import backends

    assert backends.NAMES == ("auto", *backends.REGISTERED)
    for name, where in backends.REGISTERED.items():
        module, _, cls_name = where.partition(":")
        cls = getattr(__import__(module, fromlist=[cls_name]), cls_name)
        assert issubclass(cls, Backend) and cls.name == name, where
        assert isinstance(cls.built, str) and cls.built, where
        assert backends.built_by(name) == cls.built


# -- ARCHITECTURE.md's claims, held by the code ---------------------------------------------

import ast  # noqa: E402 - the checks below read the code with Python's own parser


def keyed_by_backend(source: str, names: set[str]) -> list[tuple[int, str]]:
    """Where ``source`` keeps a table by backend name (a dict literal keyed by two or more
    registered names: one may be a flag's, ``dsn``) or looks one up by a held backend's name
    (``X.get(backend.name)``, ``X[result.backend]``): what ``cli.BUILT`` and
    ``stats.FRESH_BOOT_GOALS_P95`` were. A backend says it itself."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if len(keys & names) >= 2:
                found.append(
                    (node.lineno, f"a table keyed by backend name ({', '.join(sorted(keys & names))})")
                )
        lookups = []
        if isinstance(node, ast.Subscript):
            lookups = [node.slice]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            lookups = node.args[:1]
        for key in lookups:
            if isinstance(key, ast.Attribute) and (
                key.attr == "backend" or (key.attr == "name" and "backend" in ast.unparse(key.value))
            ):
                found.append((node.lineno, f"a lookup by {ast.unparse(key)}"))
    return found


def test_no_code_outside_the_backends_keeps_a_table_by_backend_name():
    """ARCHITECTURE.md, "Where to add": never let callers test the name."""
    from leaddb import backends

    names = set(backends.REGISTERED)
    found = [
        f"{path.relative_to(PROJECT).as_posix()}:{line}: {what}"
        for path in OUTSIDE
        for line, what in keyed_by_backend(path.read_text(encoding="utf-8"), names)
    ]
    assert not found, "ask the backend (a capability or an attribute of its class):\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        'BUILT = {"local": "the local cluster", "dsn": "the new database"}\n',
        "goal = GOALS.get(result.backend)\n",
        "text = BUILT[backend.name]\n",
    ],
)
def test_a_table_by_backend_name_is_found(source):
    assert keyed_by_backend(source, {"local", "docker", "dsn"})


LOCKING = {"lock", "_held", "_reading"}  # what holds the task lock in leaddb/workflow.py


def _handed_a_backend(tree: ast.Module) -> set[str]:
    """Private functions with a ``backend`` parameter: their callers hold the lock (each call
    to them is checked as a server call is)."""
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and node.name.startswith("_")
        and node.name not in LOCKING
        and any(a.arg == "backend" for a in node.args.args + node.args.kwonlyargs)
    }


def unlocked_server_calls(source: str) -> list[tuple[int, str]]:
    """Calls in ``source`` that start a server or make a database on it (``.start()``,
    ``scratch_database``, ``.reset(``, ``.apply(``, a private function handed the backend)
    outside every ``with`` that holds the task lock (``backend.lock(...)``, ``_held(...)``)."""
    tree = ast.parse(source)
    handed = _handed_a_backend(tree)

    def holds_lock(with_node: ast.With) -> bool:
        for item in with_node.items:
            expr = item.context_expr
            if isinstance(expr, ast.IfExp):  # `backend.lock(...) if held is None else nullcontext()`
                expr = expr.body
            func = expr.func if isinstance(expr, ast.Call) else None
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in LOCKING:
                return True
        return False

    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, locked: bool) -> None:
        if isinstance(node, ast.With) and holds_lock(node):
            locked = True
        if isinstance(node, ast.FunctionDef) and (node.name in LOCKING or node.name in handed):
            locked = True
        if isinstance(node, ast.Call) and not locked:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
            if (
                (name in ("start", "reset", "apply") and owner == "backend")
                or name == "scratch_database"
                or (name in handed and not owner)
            ):
                found.append((node.lineno, ast.unparse(node)[:60]))
        for child in ast.iter_child_nodes(node):
            visit(child, locked)

    visit(tree, False)
    return found


def test_every_task_touches_a_server_only_under_the_task_lock():
    """ARCHITECTURE.md, "The task lock": reads included, from before the server starts."""
    source = (PROJECT / "leaddb" / "workflow.py").read_text(encoding="utf-8")
    assert not unlocked_server_calls(source), unlocked_server_calls(source)


@pytest.mark.parametrize(
    "source",
    [
        "def status(options):\n    backend = _select(options)\n    backend.start()\n",
        "def status(options, backend):\n    with janitor.scratch_database(x) as s:\n        pass\n",
        "def apply(options):\n    with backend.lock('db.apply'):\n        pass\n    backend.apply(files)\n",
        "def _read(backend):\n    pass\n\ndef drift(options):\n    _read(_select(options))\n",
    ],
)
def test_a_server_call_outside_the_lock_is_found(source):
    assert unlocked_server_calls(source)
