"""Which tests the Windows-semantics pass runs (``.ci/run`` step 3', LEADDB_TEST_WINDOWS_SEMANTICS=1).

That pass collects the whole suite (a module that fails to import on Windows fails there: the
class it guards), then deselects the tests that Windows semantics cannot change: those of the
files in :data:`SAME_UNDER_WINDOWS`, and in the other files (but :data:`KEPT_UNDER_WINDOWS`) each
test that passes the same rule on its own (:func:`one_test_touches`, below). Everything else runs
again under the view, Docker-only.

The rule, checked by ``tests/test_windows_pass.py`` for every test file (:func:`touches`):
a file may be listed only when, read with ``ast``, it

* imports no module of the standard library the view changes or that reaches the platform
  (:data:`PLATFORM_MODULES`: ``os``, ``sys``, ``signal``, ``subprocess``, ``shutil``, ``tempfile``...),
  nor ``invoke``, ``docker``, ``tasks`` or the Windows view (a task, a child process, the engine);
* imports from ``leaddb`` only code that names no platform API (:data:`PLATFORM_NAMES`:
  ``platforms``, ``locks``, ``statedir``, ``signal``, ``subprocess``, ``os.open``,
  ``sys.platform``..., and every name of ``os``, ``shutil``, ``time``, ``select`` that Windows
  lacks, as the view lists them: a POSIX-only call planted in library code is seen), itself
  or through the leaddb code it names in turn (a module: its source and every leaddb module it
  imports; ``from leaddb.m import f``: f's body and the leaddb names in
  it), but for :data:`READ_THE_CHECKOUT`; and from ``tests/`` only helpers that pass this rule;
* asks for no fixture that hands it the file system or a patch (``tmp_path``, ``monkeypatch``...):
  files are read through leaddb's readers, which open them differently on Windows.

Such a file tests SQL through psycopg, or text and data in memory: the same on every platform.
A file that passes the rule is either listed here or in :data:`KEPT_UNDER_WINDOWS` (with the
reason it runs anyway), so a new test file is always classified; a file that fails the rule
runs under Windows, and the static test says what it touches. The rule reads names, not
values (a function passed around, ``getattr``), so a listed file's reason says what it calls.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent

SAME_UNDER_WINDOWS = {
    "tests/test_constraints.py": "SQL through psycopg against the migrated schema: the spec's constraints",
    "tests/test_formats_property.py": "SQL through psycopg: the formats' CHECKs against generated values",
    "tests/test_load.py": "8 writers (threads, which the view leaves) through psycopg; figures by pathlib",
    "tests/test_docker_logs.py": "the container's boot log parsed from text in memory (bootlog)",
    "tests/test_requirements.py": "reads the repository's requirement files and pyproject.toml as text",
    "tests/test_secret_file.py": "secret values parsed from text in memory",
    "tests/test_windows_pass.py": "this rule, read from the test files' source with ast",
    "tests/unit/test_errors.py": "the failures' messages and exit codes, built in memory",
    "tests/unit/test_transaction_control.py": "statement classification on SQL text",
}

KEPT_UNDER_WINDOWS: dict[str, str] = {
    "tests/unit/test_paths.py": "paths.shown cuts the project's prefix at os.sep (Windows' own there)",
}

# leaddb code that reads files of the checkout only (the spec, the migrations as shipped): their
# content is the same on every platform; the readers' Windows side has tests of its own that run
# under Windows semantics (tests/unit/test_files.py, tests/unit/test_spec.py)
READ_THE_CHECKOUT = frozenset({("leaddb.spec", "Spec")})

# the standard library's modules the Windows view changes, or that reach the platform, and the
# packages that run tasks, children or the engine (threading is neither: the view leaves it)
PLATFORM_MODULES = frozenset(
    """os sys signal subprocess shutil tempfile socket stat errno select multiprocessing
    ctypes fcntl msvcrt pwd grp resource pty termios tty posix nt
    invoke docker tasks noxfile benchmarks windows_view platform_marks""".split()
)
# a leaddb module (or a test helper) naming any of these reaches the platform
PLATFORM_NAMES = frozenset(
    "platforms locks statedir signal subprocess shutil tempfile socket fcntl msvcrt pwd grp resource".split()
)
PLATFORM_ATTRIBUTES = frozenset({("os", "open"), ("os", "name"), ("os", "kill"), ("sys", "platform")})
# modules whose names the view takes away one by one (a name Windows lacks is a hit)
VIEWED = frozenset({"os", "shutil", "time", "select"})
PLATFORM_FIXTURES = frozenset({"tmp_path", "tmp_path_factory", "tmpdir", "tmpdir_factory", "monkeypatch"})
HELPER_DIRS = (TESTS, TESTS / "unit", TESTS / "docker")


def relative(path: Path) -> str:
    return Path(path).resolve().relative_to(PROJECT).as_posix()


def test_file_paths() -> list[str]:
    return sorted(relative(p) for p in TESTS.rglob("test_*.py") if "windows_semantics" not in p.parts)


def _imports(tree: ast.AST) -> set[tuple[str, str]]:
    """(module, name) pairs: ``import m`` gives (m, ""), ``from m import n`` gives (m, n)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(alias.name, "") for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {(node.module, alias.name) for alias in node.names}
    return found


@functools.cache
def _module_file(name: str) -> Path | None:
    """The source of ``leaddb.x.y`` (a module or a package) or of a helper under tests/."""
    if name == "leaddb" or name.startswith("leaddb."):
        base = PROJECT.joinpath(*name.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None  # a name imported from a module, not a module
    if "." not in name:
        for folder in HELPER_DIRS:
            if (folder / f"{name}.py").is_file():
                return folder / f"{name}.py"
    return None


# test files by their source alone, for the rule's own tests (one_test_touches_source)
PLANTED: dict[str, str] = {}

DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@functools.cache
def _parsed(path: Path) -> ast.Module:
    planted = PLANTED.get(relative(path))
    return ast.parse(planted if planted is not None else path.read_text(encoding="utf-8"))


def _bindings(tree: ast.AST, nodes=None) -> dict[str, tuple[str, str]]:
    """What a module's top-level imports bind (or, with ``nodes``, the imports anywhere in
    them: a function's own): name -> (module, attribute or "")."""
    bound = {}
    for node in tree.body if nodes is None else nodes:
        if isinstance(node, ast.Import):
            bound |= {(alias.asname or alias.name).split(".")[0]: (alias.name, "") for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            bound |= {alias.asname or alias.name: (node.module, alias.name) for alias in node.names}
    return bound


@functools.cache
def _view():
    """tests/windows_semantics/windows_view.py's lists (loaded apart, nothing installed): which
    names of ``os``, ``shutil``, ``time``, ``select`` Windows lacks."""
    spec = importlib.util.spec_from_file_location(
        "windows_pass_view", TESTS / "windows_semantics" / "windows_view.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _hits(node: ast.AST) -> frozenset[str]:
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and child.id in PLATFORM_NAMES:
            found.add(child.id)
        elif isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name):
            module, name = child.value.id, child.attr
            if (module, name) in PLATFORM_ATTRIBUTES or module in VIEWED and _view().posix_only(module, name):
                found.add(f"{module}.{name}")
        elif (  # getattr(os, "O_NOFOLLOW", 0): the same name, read by its string
            isinstance(child, ast.Call)
            and isinstance(child.func, ast.Name)
            and child.func.id in ("getattr", "hasattr")
            and len(child.args) >= 2
            and isinstance(child.args[0], ast.Name)
            and isinstance(child.args[1], ast.Constant)
            and isinstance(child.args[1].value, str)
        ):
            module, name = child.args[0].id, child.args[1].value
            if (module, name) in PLATFORM_ATTRIBUTES or module in VIEWED and _view().posix_only(module, name):
                found.add(f"{module}.{name}")
    return frozenset(found)


@functools.cache
def reaches(module: str, name: str = "") -> tuple[str, ...]:
    return tuple(_names_platform(module, name))


def _names_platform(module: str, name: str = "", _seen: set | None = None) -> list[str]:
    """The platform API a leaddb module names (``import``: the module, and every leaddb module it
    imports), or one of its top-level functions, classes or constants reaches (``from m import
    f``: f's body, and what it names in turn, in its module or another leaddb module)."""
    seen = set() if _seen is None else _seen
    if (module, name) in seen or (module, name) in READ_THE_CHECKOUT:
        return []
    seen.add((module, name))
    if module.split(".")[-1] in PLATFORM_NAMES:
        return [module]
    submodule = _module_file(f"{module}.{name}") if name else None
    if submodule is not None:
        return _names_platform(f"{module}.{name}", "", seen)
    path = _module_file(module)
    if path is None:
        return []
    tree = _parsed(path)
    bindings = _bindings(tree)
    if name:
        nodes = [
            node
            for node in tree.body
            if isinstance(node, DEFINITIONS)
            and node.name == name
            or isinstance(node, ast.Assign)
            and any(getattr(t, "id", "") == name for t in node.targets)
            or isinstance(node, ast.AnnAssign)
            and getattr(node.target, "id", "") == name
        ]
        if not nodes and name in bindings:  # re-exported: checked where it is defined
            return _names_platform(*bindings[name], seen)
        defined = {node.name for node in tree.body if isinstance(node, DEFINITIONS)}
        found = set()
        for node in nodes:
            found |= _hits(node)
            # what the body imports where it runs (a lazy import) reaches as a top-level one does
            uses, inner = _uses(node)
            bindings = {**bindings, **_bindings(tree, inner)}
            for used in dict.fromkeys(used for used, _member in uses if used and used != name):
                if used in defined:
                    found |= set(_names_platform(module, used, seen))
                elif used in bindings and bindings[used][0].startswith("leaddb"):
                    found |= set(_names_platform(*bindings[used], seen))
        return sorted(found)
    found = _hits(tree)
    for target in bindings.values():
        if target[0] == "leaddb" or target[0].startswith("leaddb."):
            found |= {f"{hit} (through {target[0]})" for hit in _names_platform(target[0], "", seen)}
    return sorted(found)


def touches(relative_path: str, _seen: frozenset[str] = frozenset()) -> list[str]:
    """What in a test file (or helper) may differ under Windows semantics; empty: nothing."""
    return touches_source((PROJECT / relative_path).read_text(encoding="utf-8"), relative_path, _seen)


def touches_source(text: str, relative_path: str = "", _seen: frozenset[str] = frozenset()) -> list[str]:
    tree = ast.parse(text)
    found = []
    for module, name in sorted(_imports(tree)):
        top = module.split(".")[0]
        if top in PLATFORM_MODULES:
            found.append(f"imports {module}")
            continue
        what = f"{module}.{name}" if name else module
        if top == "leaddb":
            found += [f"imports {what}, which reaches {hit}" for hit in reaches(module, name)]
            continue
        source = _module_file(module)
        if source is None:
            continue
        if relative(source) not in _seen and relative(source) != relative_path:
            found += [f"imports {what}: {hit}" for hit in touches(relative(source), _seen | {relative_path})]
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for argument in node.args.args + node.args.kwonlyargs:
                if argument.arg in PLATFORM_FIXTURES:
                    found.append(f"{node.name} asks for {argument.arg}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in PLATFORM_ATTRIBUTES:
                found.append(f"names {node.value.id}.{node.attr}")
    return sorted(set(found))


def deselected(path: Path, test: str | None = None) -> bool:
    """A test of this file (``test``: its function's name; None: a test this rule cannot read, such
    as a method) is left out of the Windows-semantics pass: every test of a file in
    :data:`SAME_UNDER_WINDOWS`; elsewhere each test that reaches nothing Windows semantics changes
    (:func:`one_test_touches`), but none of a file in :data:`KEPT_UNDER_WINDOWS`."""
    try:
        where = relative(path)
    except ValueError:  # outside the project
        return False
    if where in SAME_UNDER_WINDOWS:
        return True
    if where in KEPT_UNDER_WINDOWS or test is None or not where.startswith("tests/"):
        return False
    return not one_test_touches(where, test)


# -- one test at a time -------------------------------------------------------------------------
# In a file that fails the rule as a whole, a test may still reach nothing Windows changes (a
# rule case on text, a statistic): :func:`one_test_touches` applies the same rule to what that one
# test runs: its body and decorators (parametrize values included), the helpers, classes and
# constants of its file and of tests/ helpers it names (their code, in turn), the leaddb
# functions it calls (``migrations.split_statements``: that function's code, as above; a module
# named bare, ``getattr(module, ...)``: the whole module), and its fixtures (their code, the
# fixtures they ask for, and the autouse ones of its file and conftest.py files).

# fixtures of tests/conftest.py that give a test the session's server or a database of it: set
# up by the suite for every test that uses the server, their code (the backend, the scratch
# databases) runs under Windows semantics in each kept one (tests/test_windows_pass.py checks
# that kept tests ask for them); what a test does with its database is SQL through psycopg
SERVER_FIXTURES = frozenset(
    {"server", "keeper", "template_db", "fresh_db", "conn", "project_dir", "migration_files"}
)
# pytest's own fixtures that hand a test neither files nor a patch
PLAIN_FIXTURES = frozenset(
    {"request", "capsys", "capfd", "capsysbinary", "capfdbinary", "caplog", "recwarn", "pytestconfig"}
)


def _is_fixture(node: ast.AST) -> tuple[bool, bool]:
    """(a fixture, an autouse one)."""
    for decorator in getattr(node, "decorator_list", ()):
        call = decorator if isinstance(decorator, ast.Call) else None
        target = call.func if call else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "fixture":
            autouse = any(
                k.arg == "autouse" and isinstance(k.value, ast.Constant) and k.value.value
                for k in (call.keywords if call else ())
            )
            return True, autouse
    return False, False


def _parameters(node: ast.FunctionDef) -> set[str]:
    """Argument names its decorators fill in: parametrize's names; every argument under hypothesis'
    ``given`` (its strategies are read with the decorators)."""
    names = set()
    for decorator in node.decorator_list:
        if not isinstance(decorator, ast.Call):
            continue
        func = decorator.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called == "parametrize" and decorator.args:
            first = decorator.args[0]
            if isinstance(first, ast.Constant):
                names |= {n.strip() for n in str(first.value).split(",")}
            elif isinstance(first, ast.Tuple | ast.List):
                names |= {e.value for e in first.elts if isinstance(e, ast.Constant)}
        elif called == "given":
            names |= {a.arg for a in node.args.args + node.args.kwonlyargs}
    return names


@functools.cache
def _facts(relative_path: str):
    tree = _parsed(PROJECT / relative_path)
    top = {}
    fixtures, autouse = {}, []
    for node in tree.body:
        if isinstance(node, DEFINITIONS):
            top[node.name] = node
            is_fixture, is_autouse = _is_fixture(node)
            if is_fixture:
                fixtures[node.name] = node
                if is_autouse:
                    autouse.append(node.name)
        elif isinstance(node, ast.Assign):
            top |= {t.id: node for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            top[node.target.id] = node
    return tree, _bindings(tree), top, fixtures, autouse


@functools.cache
def _conftests(relative_path: str) -> tuple[str, ...]:
    """The conftest.py files whose fixtures a test file sees, nearest first."""
    found = []
    folder = (PROJECT / relative_path).parent
    while folder == TESTS or TESTS in folder.parents:
        if (folder / "conftest.py").is_file():
            found.append(relative(folder / "conftest.py"))
        folder = folder.parent
    return tuple(found)


def _fixture(relative_path: str, name: str) -> tuple[str, ast.AST] | None:
    for where in (relative_path, *_conftests(relative_path)):
        node = _facts(where)[3].get(name)
        if node is not None:
            return where, node
    return None


# what a definition reaches, once computed whole (a definition inside a cycle that was cut while
# it was computed is computed again where it is met next)
_REACHED: dict[tuple[str, str], frozenset[str]] = {}
_IN_PROGRESS: list[tuple[str, str]] = []
_CUT: set[tuple[str, str]] = set()


def _reach_name(relative_path: str, name: str) -> frozenset[str]:
    """What a top-level definition or constant of a test file or helper (a fixture: with the
    fixtures it asks for) reaches."""
    key = (relative_path, name)
    if key in _REACHED:
        return _REACHED[key]
    if key in _IN_PROGRESS:  # a cycle: what it reaches is being gathered further up
        _CUT.update(_IN_PROGRESS[_IN_PROGRESS.index(key) + 1 :])
        return frozenset()
    _IN_PROGRESS.append(key)
    try:
        _tree, bindings, top, fixtures, _autouse = _facts(relative_path)
        if name in top:
            found = _reach(relative_path, top[name], asks=name in fixtures)
        elif name in bindings:  # re-exported from another helper or leaddb
            found = _reach_binding(bindings[name], "")
        else:
            found = {f"{relative_path}: {name}, which this rule cannot find"}
    finally:
        _IN_PROGRESS.pop()
    if key in _CUT:
        _CUT.discard(key)
    else:
        _REACHED[key] = frozenset(found)
    return frozenset(found)


def _reach_binding(target: tuple[str, str], member: str) -> set[str]:
    module, attribute = target
    top = module.split(".")[0]
    what = f"{module}.{attribute}" if attribute else module
    if top in PLATFORM_MODULES:
        return {f"names {what}"}
    if top == "leaddb":
        if attribute and _module_file(f"{module}.{attribute}") is not None:  # from leaddb import m
            module, attribute = f"{module}.{attribute}", ""
        if not attribute and member:  # m.f: f's code
            attribute, what = member, f"{module}.{member}"
        return {f"calls {what}, which reaches {hit}" for hit in reaches(module, attribute)}
    source = _module_file(module)
    if source is None or not relative(source).startswith("tests/"):
        return set()  # a third-party package: pytest, psycopg, hypothesis
    helper = relative(source)
    name = attribute or member
    if not name:
        return {f"names {module}: {hit}" for hit in touches(helper)}
    return set(_reach_name(helper, name))


@functools.cache
def _uses(node: ast.AST) -> tuple[tuple[tuple[str, str], ...], tuple[ast.AST, ...]]:
    """The names ``node``'s code uses, each with the attribute read from it (``m.f``: f), plus
    ``("", "getfixturevalue")`` for a fixture asked for by its name at run time; and its own imports."""
    uses, imports = [], []
    for parent in ast.walk(node):
        if isinstance(parent, ast.Import | ast.ImportFrom):
            imports.append(parent)
        for child in ast.iter_child_nodes(parent):
            if isinstance(child, ast.Name) and child.id != getattr(node, "name", None):
                member = parent.attr if isinstance(parent, ast.Attribute) and parent.value is child else ""
                uses.append((child.id, member))
        if isinstance(parent, ast.Attribute) and parent.attr == "getfixturevalue":
            uses.append(("", "getfixturevalue"))
    return tuple(dict.fromkeys(uses)), tuple(imports)


def _reach(relative_path: str, node: ast.AST, *, asks: bool = False, autouse: bool = False) -> set[str]:
    """What the code of ``node`` (a test, fixture, helper, class or constant) reaches; ``asks``: a
    test or a fixture, whose arguments are fixtures (an autouse one's own ``tmp_path`` or
    ``monkeypatch`` hands the test nothing: its code is what counts)."""
    tree, bindings, top, _fixtures, _autouse = _facts(relative_path)
    uses, inner = _uses(node)
    if inner:
        bindings = {**bindings, **_bindings(tree, inner)}
    found = set()
    for name, member in uses:
        if not name:
            found.add("asks for a fixture by its name at run time")
        elif name in bindings:
            found |= _reach_binding(bindings[name], member)
        elif name in top:
            found |= _reach_name(relative_path, name)
    if asks:
        filled = _parameters(node)
        for argument in node.args.args + node.args.kwonlyargs:
            name = argument.arg
            if name in ("self", "cls") or name in filled or name in PLAIN_FIXTURES:
                continue
            if name in PLATFORM_FIXTURES:
                if not autouse:
                    found.add(f"{node.name} asks for {name}")
                continue
            located = _fixture(relative_path, name)
            if located is None:
                found.add(f"{node.name} asks for {name}, a fixture this rule cannot find")
            elif located[0] != "tests/conftest.py" or name not in SERVER_FIXTURES:
                found |= _reach_name(located[0], name)
    return found


@functools.cache
def one_test_touches(relative_path: str, test: str) -> tuple[str, ...]:
    """What one test (a function of the file, by name) may differ in under Windows semantics;
    empty: nothing. Its file's and its conftest.py files' autouse fixtures count too."""
    _tree, _bindings_, top, _fixtures, _autouse = _facts(relative_path)
    node = top.get(test)
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return (f"{test}: not a function of {relative_path} this rule can read",)
    found = _reach(relative_path, node, asks=True)
    for where in (relative_path, *_conftests(relative_path)):
        for name in _facts(where)[4]:
            found |= _reach(where, _facts(where)[3][name], asks=True, autouse=True)
    return tuple(sorted(found))


def one_test_touches_source(source: str, test: str) -> tuple[str, ...]:
    """:func:`one_test_touches` for a test file given by its source (the rule's own tests), as a file
    of ``tests/`` that does not exist."""
    where = f"tests/test_planted_{hashlib.sha256(source.encode()).hexdigest()[:16]}.py"
    PLANTED[where] = source
    return one_test_touches(where, test)
