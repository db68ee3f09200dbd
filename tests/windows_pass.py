"""Which tests the Windows-semantics pass runs (``.ci/run`` step 3', LEADDB_TEST_WINDOWS_SEMANTICS=1).

That pass collects the whole suite (a module that fails to import on Windows fails there: the
class it guards), then deselects the tests that Windows semantics cannot change: those of the
files in :data:`SAME_UNDER_WINDOWS`. Everything else runs again under the view, Docker-only.

The rule, checked by ``tests/test_windows_pass.py`` for every test file (:func:`touches`):
a file may be listed only when, read with ``ast``, it

* imports no module of the standard library the view changes or that reaches the platform
  (:data:`PLATFORM_MODULES`: ``os``, ``sys``, ``signal``, ``subprocess``, ``shutil``, ``tempfile``...),
  nor ``invoke``, ``docker``, ``tasks`` or the Windows view (a task, a child process, the engine);
* imports from ``leaddb`` only code that names no platform API (:data:`PLATFORM_NAMES`:
  ``platforms``, ``locks``, ``statedir``, ``signal``, ``subprocess``, ``os.open``,
  ``sys.platform``...), itself or through the leaddb code it names in turn (a module: its source
  and every leaddb module it imports; ``from leaddb.m import f``: f's body and the leaddb names in
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


DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@functools.cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


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


def _hits(node: ast.AST) -> set[str]:
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and child.id in PLATFORM_NAMES:
            found.add(child.id)
        elif isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name):
            if (child.value.id, child.attr) in PLATFORM_ATTRIBUTES:
                found.add(f"{child.value.id}.{child.attr}")
    return found


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
            inner = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
            bindings = {**bindings, **_bindings(tree, inner)}
            for child in ast.walk(node):
                if isinstance(child, ast.Name) and child.id != name:
                    if child.id in defined:
                        found |= set(_names_platform(module, child.id, seen))
                    elif child.id in bindings and bindings[child.id][0].startswith("leaddb"):
                        target = bindings[child.id]
                        found |= set(_names_platform(*target, seen))
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


def deselected(path: Path) -> bool:
    """A test of this file is left out of the Windows-semantics pass."""
    try:
        return relative(path) in SAME_UNDER_WINDOWS
    except ValueError:  # outside the project
        return False
