"""The dependency locks: every nox session installs from requirements/<lock>.txt (every package
pinned and hashed, written by ``nox -s lock``), and each lock holds what pyproject.toml asks for
on every platform the project supports (Windows, Linux, macOS; Python 3.11 to 3.13).

Server-free: reads pyproject.toml, noxfile.py and requirements/ only. The checks are functions
of text, so the tests below also feed them broken locks and noxfiles and assert each is named.
"""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements"
REFRESH = "run `nox -s lock` and commit requirements/"

# The platforms a universal lock must serve (the markers' variables that differ between them).
PLATFORMS = {
    f"{system}, Python 3.{minor}": {
        "sys_platform": sys_platform,
        "platform_system": system,
        "os_name": "nt" if sys_platform == "win32" else "posix",
        "platform_machine": machine,
        "python_version": f"3.{minor}",
        "python_full_version": f"3.{minor}.1",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    for sys_platform, system, machine in (
        ("win32", "Windows", "AMD64"),
        ("linux", "Linux", "x86_64"),
        ("darwin", "Darwin", "arm64"),
    )
    for minor in (11, 12, 13)
}
HASH = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    line: int
    requirement: Requirement
    hashes: tuple[str, ...]

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    def applies(self, platform: dict[str, str]) -> bool:
        marker = self.requirement.marker
        return marker is None or marker.evaluate(platform)


def read_lock(text: str, where: str) -> tuple[list[Pin], list[str]]:
    """The pins of a lock file's text, and what is wrong with its lines (unpinned, unhashed)."""
    pins: list[Pin] = []
    problems: list[str] = []
    logical: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if pending is None and not line:
            continue
        start, sofar = pending if pending else (number, "")
        sofar += " " + line.removesuffix("\\")
        pending = (start, sofar) if line.endswith("\\") else None
        if pending is None:
            logical.append((start, sofar.strip()))
    for number, line in logical:
        spec, *options = line.split(" --hash=")
        if spec.startswith("-"):
            problems.append(f"{where}:{number}: an option line ({spec.split()[0]}), not a pinned requirement")
            continue
        requirement = Requirement(spec)
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in specifiers[0].version:
            problems.append(f"{where}:{number}: {spec} is not pinned to one version (name==version)")
        hashes = tuple(o.strip() for o in options)
        if not hashes:
            problems.append(f"{where}:{number}: {requirement.name} has no --hash (pip's --require-hashes)")
        problems += [
            f"{where}:{number}: {requirement.name}: {h!r} is not a sha256"
            for h in hashes
            if not HASH.fullmatch(h)
        ]
        pins.append(Pin(number, requirement, hashes))
    return pins, problems


def pinned_version(pin: Pin) -> Version:
    return Version(next(iter(pin.requirement.specifier)).version)


def coverage_problems(pins: list[Pin], wanted: list[Requirement], where: str, source: str) -> list[str]:
    """What ``wanted`` (from ``source``) asks for that the lock's ``pins`` do not give, per platform."""
    problems: list[str] = []
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        for platform, environment in PLATFORMS.items():
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            chosen = [p for p in pins if p.name == name and p.applies(environment)]
            if not chosen:
                problems.append(f"{where}: no line for {requirement} ({source}) on {platform}; {REFRESH}")
                break
            if not requirement.specifier.contains(pinned_version(chosen[0]), prereleases=True):
                problems.append(
                    f"{where}:{chosen[0].line}: {chosen[0].requirement} is outside {requirement} ({source});"
                    f" {REFRESH}"
                )
                break
    for platform, environment in PLATFORMS.items():
        seen: dict[str, Pin] = {}
        for pin in pins:
            if pin.applies(environment):
                if pin.name in seen:
                    problems.append(
                        f"{where}:{pin.line}: {pin.name} is pinned twice on {platform}"
                        f" (also line {seen[pin.name].line})"
                    )
                seen[pin.name] = pin
    return problems


def extra_requirements(project: dict, extra: str | None) -> list[Requirement]:
    """pyproject.toml's dependencies plus an extra's, its self-references (``leaddb[test]``) expanded."""
    name = canonicalize_name(project["name"])
    extras = project.get("optional-dependencies", {})
    wanted = [Requirement(text) for text in project.get("dependencies", [])]
    todo, done = [extra] if extra else [], set()
    while todo:
        current = todo.pop()
        if current not in done:
            done.add(current)
            for requirement in map(Requirement, extras[current]):
                if canonicalize_name(requirement.name) == name:
                    todo += sorted(requirement.extras)
                else:
                    wanted.append(requirement)
    return wanted


def declared_locks(noxfile: str) -> dict[str, str | None]:
    """noxfile.py's ``LOCKS``: lock name -> the pyproject extra it holds."""
    for node in ast.parse(noxfile).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "LOCKS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("noxfile.py has no LOCKS = {lock name: extra} (nox -s lock writes those files)")


def build_in_requirements(text: str) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [Requirement(line) for line in lines if line]


def lock_set_problems(pyproject: dict, noxfile: str, files: dict[str, str]) -> list[str]:
    """Everything wrong with the locks ``files`` (name -> text, e.g. "test.txt") for this
    pyproject.toml and noxfile.py."""
    problems: list[str] = []
    locks = declared_locks(noxfile)
    project = pyproject["project"]
    for extra in project.get("optional-dependencies", {}):
        if extra not in locks.values():
            problems.append(f"noxfile.py: LOCKS has no lock for the extra {extra!r} of pyproject.toml")
    build = [Requirement(text) for text in pyproject["build-system"]["requires"]]
    build_in = build_in_requirements(files.get("build.in", ""))
    if sorted(map(str, build_in)) != sorted(map(str, build)):
        problems.append(
            f"requirements/build.in says {[str(r) for r in build_in]}, pyproject.toml's [build-system]"
            f" requires {[str(r) for r in build]}: make them the same, then {REFRESH}"
        )
    pins_of: dict[str, list[Pin]] = {}
    for name, text in sorted(files.items()):
        if name.endswith(".txt"):
            pins_of[name], found = read_lock(text, f"requirements/{name}")
            problems += found
    for lock, extra in locks.items():
        where = f"requirements/{lock}.txt"
        if f"{lock}.txt" not in pins_of:
            problems.append(f"{where} is missing (noxfile.py's LOCKS names it); {REFRESH}")
            continue
        source = f"pyproject.toml, extra {extra!r}" if extra else "pyproject.toml"
        problems += coverage_problems(
            pins_of[f"{lock}.txt"], extra_requirements(project, extra), where, source
        )
        problems += coverage_problems(pins_of[f"{lock}.txt"], build, where, "pyproject.toml [build-system]")
    for name in sorted(n for n in files if n.endswith(".in") and n != "build.in"):
        lock = name.removesuffix(".in") + ".txt"
        if lock not in pins_of:
            problems.append(f"requirements/{lock} is missing (requirements/{name} asks for it); {REFRESH}")
        else:
            wanted = build_in_requirements(files[name])
            problems += coverage_problems(
                pins_of[lock], wanted, f"requirements/{lock}", f"requirements/{name}"
            )
    return problems


INSTALL_CALLS = {"install", "run_install"}


def session_problems(noxfile: str) -> list[str]:
    """Sessions of ``noxfile`` that do not install from a lock, and installs outside ``_install``."""
    problems: list[str] = []
    tree = ast.parse(noxfile)
    locks = set(declared_locks(noxfile)) | {"uv"}
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    for function in functions:
        calls = [node for node in ast.walk(function) if isinstance(node, ast.Call)]
        if function.name == "_install":
            strings = {n.value for n in ast.walk(function) if isinstance(n, ast.Constant)}
            for flag in ("--require-hashes", "--no-deps", "--no-build-isolation"):
                if flag not in strings:
                    problems.append(f"noxfile.py:{function.lineno}: _install does not pass {flag}")
            continue
        for call in calls:
            method = getattr(call.func, "attr", None)
            words = [n.value for n in call.args if isinstance(n, ast.Constant)]
            if method in INSTALL_CALLS or ("pip" in words and "install" in words):
                problems.append(
                    f"noxfile.py:{call.lineno}: {function.name} installs outside _install (unpinned)"
                )
        sessions = [d for d in function.decorator_list if "session" in ast.unparse(d)]
        if not sessions:
            continue
        installs = [c for c in calls if getattr(c.func, "id", None) == "_install"]
        if not installs:
            problems.append(f"noxfile.py:{function.lineno}: session {function.name} does not call _install")
        for call in installs:
            lock = call.args[1].value if len(call.args) > 1 else "base"
            if lock not in locks:
                problems.append(
                    f"noxfile.py:{call.lineno}: session {function.name} installs {lock!r}, not a lock"
                )
    return problems


UNLOCKED_INSTALL = re.compile(r"\b(pip3?|uv pip|pipx|npm|pnpm|yarn)\s+(install|i|add)\b|\bnpx\s")


def ci_install_problems(files: dict[str, str]) -> list[str]:
    """Lines of the CI scripts ``files`` (name -> text) that install a package without a lock:
    pip only with --require-hashes, npm only as ``npm ci`` (package-lock.json's hashes)."""
    problems: list[str] = []
    for name, text in sorted(files.items()):
        for number, line in enumerate(text.splitlines(), start=1):
            if line.lstrip().startswith("#") or not UNLOCKED_INSTALL.search(line):
                continue
            if "pip" in line and "--require-hashes" in line:
                continue
            problems.append(f".ci/{name}:{number}: installs without a lock: {line.strip()}")
    return problems


def repo_files() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(REQUIREMENTS.iterdir()) if p.is_file()}


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def noxfile() -> str:
    return (REPO / "noxfile.py").read_text(encoding="utf-8")


# -- the repository -------------------------------------------------------------------------------
def test_the_locks_hold_what_pyproject_asks_for_pinned_and_hashed():
    assert lock_set_problems(pyproject(), noxfile(), repo_files()) == []


def test_every_nox_session_installs_from_a_lock():
    assert session_problems(noxfile()) == []


def test_the_lock_names_are_the_sessions_extras():
    """The sessions' locks by name (what the README promises): a rename here is a rename there."""
    assert declared_locks(noxfile()) == {"base": None, "test": "test", "lint": "lint", "mutation": "mutation"}
    assert sorted(p.name for p in REQUIREMENTS.glob("*.txt")) == [
        "base.txt",
        "compose.txt",
        "lint.txt",
        "migra.txt",
        "mutation.txt",
        "test.txt",
        "uv.txt",
    ]


def test_ci_installs_nothing_without_a_lock():
    """.ci/ installs Python packages only through nox (the locks) and mermaid with npm ci."""
    scripts = {p.name: p.read_text(encoding="utf-8") for p in sorted((REPO / ".ci").iterdir()) if p.is_file()}
    assert ci_install_problems(scripts) == []
    assert "npm ci --prefix" in scripts["run"]


def test_windows_only_packages_are_in_the_locks_for_windows_only():
    pins, _ = read_lock(repo_files()["test.txt"], "test.txt")
    by_name = {p.name: p for p in pins}
    for name in ("pywin32", "colorama"):
        assert by_name[name].applies(PLATFORMS["Windows, Python 3.11"])
        assert not by_name[name].applies(PLATFORMS["Linux, Python 3.11"])


# -- the checks can fail --------------------------------------------------------------------------
def broken(files: dict[str, str], lock: str, old: str, new: str) -> dict[str, str]:
    assert old in files[lock], f"{old!r} not in {lock}"
    return {**files, lock: files[lock].replace(old, new, 1)}


def line_of(files: dict[str, str], lock: str, prefix: str) -> str:
    return next(line for line in files[lock].splitlines() if line.startswith(prefix))


def test_a_dependency_missing_from_its_lock_is_named():
    project = pyproject()
    project["project"]["optional-dependencies"]["test"].append("leaddb-not-a-package>=1")
    problems = lock_set_problems(project, noxfile(), repo_files())
    assert any(
        p.startswith(
            "requirements/test.txt: no line for leaddb-not-a-package>=1 (pyproject.toml, extra 'test')"
        )
        for p in problems
    ), problems
    assert any(p.startswith("requirements/mutation.txt: no line for leaddb-not-a-package") for p in problems)
    assert not any(p.startswith("requirements/base.txt") for p in problems), problems


def test_a_windows_only_dependency_missing_on_windows_is_named():
    files = repo_files()
    pywin32 = line_of(files, "base.txt", "pywin32==")
    files = broken(
        files, "base.txt", pywin32, pywin32.replace("sys_platform == 'win32'", "sys_platform == 'linux'")
    )
    problems = lock_set_problems(pyproject(), noxfile(), files)
    assert any("no line for pywin32>=306" in p and "on Windows, Python 3.11" in p for p in problems), problems


def test_a_pin_outside_pyprojects_range_is_named():
    project = pyproject()
    project["project"]["dependencies"] = [
        "rich>=9999" if d.startswith("rich") else d for d in project["project"]["dependencies"]
    ]
    problems = lock_set_problems(project, noxfile(), repo_files())
    assert any(p.startswith("requirements/base.txt:") and "is outside rich>=9999" in p for p in problems), (
        problems
    )


def test_a_lock_line_without_a_hash_is_named():
    files = repo_files()
    rich = line_of(files, "lint.txt", "rich==")
    start = files["lint.txt"].index(rich)
    end = files["lint.txt"].index("\n", files["lint.txt"].index("--hash=", start))
    unhashed = files["lint.txt"][:start] + rich.removesuffix(" \\") + files["lint.txt"][end:]
    number = files["lint.txt"][:start].count("\n") + 1
    problems = lock_set_problems(pyproject(), noxfile(), {**files, "lint.txt": unhashed})
    assert f"requirements/lint.txt:{number}: rich has no --hash (pip's --require-hashes)" in problems


def test_an_unpinned_lock_line_is_named():
    files = repo_files()
    rich = line_of(files, "test.txt", "rich==")
    files = broken(files, "test.txt", rich, rich.replace("rich==", "rich>="))
    problems = lock_set_problems(pyproject(), noxfile(), files)
    assert any("test.txt:" in p and "is not pinned to one version" in p for p in problems), problems


def test_a_missing_lock_and_a_stale_build_in_are_named():
    files = {k: v for k, v in repo_files().items() if k != "lint.txt"}
    files["build.in"] = "setuptools>=1\n"
    problems = lock_set_problems(pyproject(), noxfile(), files)
    assert any(p.startswith("requirements/lint.txt is missing") for p in problems), problems
    assert any(p.startswith("requirements/build.in says ['setuptools>=1']") for p in problems), problems


def test_an_extra_without_a_lock_is_named():
    project = pyproject()
    project["project"]["optional-dependencies"]["docs"] = ["sphinx>=7"]
    assert "noxfile.py: LOCKS has no lock for the extra 'docs' of pyproject.toml" in lock_set_problems(
        project, noxfile(), repo_files()
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('    _install(session, "test", bytecode=True)\n', "", "session tests does not call _install"),
        (
            '_install(session, "lint")',
            '_install(session, "docs")',
            "session lint installs 'docs', not a lock",
        ),
        (
            '    _install(session, "lint")\n',
            '    session.install("ruff")\n',
            "lint installs outside _install (unpinned)",
        ),
        (
            '    _install(session, "lint")\n',
            '    session.run("python", "-m", "pip", "install", ".[lint]")\n',
            "lint installs outside _install (unpinned)",
        ),
        ('"--require-hashes", ', "", "_install does not pass --require-hashes"),
        ('"--no-deps", ', "", "_install does not pass --no-deps"),
    ],
)
def test_a_session_that_does_not_install_from_a_lock_is_named(old, new, expected):
    text = noxfile()
    assert old in text, f"noxfile.py changed: {old!r} is gone"
    problems = session_problems(text.replace(old, new, 1))
    assert any(p.endswith(expected) for p in problems), problems


@pytest.mark.parametrize(
    "line",
    [
        "python -m pip install --quiet nox",
        '    npm install --prefix "$dir" --no-package-lock mermaid@11',
        "uv pip install ruff",
        "npx mermaid --version",
        "pip3 install -r requirements/test.txt",
    ],
)
def test_a_ci_install_without_a_lock_is_named(line):
    text = f"#!/usr/bin/env bash\n# pip install in a comment is fine\nset -e\n{line}\n"
    assert ci_install_problems({"run": text}) == [f".ci/run:4: installs without a lock: {line.strip()}"]
    assert (
        ci_install_problems({"run": "python -m pip install --require-hashes -r requirements/test.txt\n"})
        == []
    )
