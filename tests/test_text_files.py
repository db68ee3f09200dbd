"""Every text file the code or a test writes has an explicit newline and encoding, and every
text read names its encoding: on Windows, Python's defaults write CRLF (which the migration
loader and the postgres image refuse or mangle) and read with the locale's code page.

A static check of the repository's Python (pathlib's ``write_text``/``read_text``/``open``,
the built-in ``open``, ``os.fdopen``): a call it cannot prove explicit fails, naming the file
and line."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    p
    for pattern in ("leaddb/**/*.py", "tests/**/*.py", "benchmarks/**/*.py", "*.py")
    for p in REPO.glob(pattern)
    if ".nox" not in p.parts
)
# Module-level names whose ``.open`` is not a text-file open.
NOT_TEXT_OPENERS = {"os", "gzip", "tarfile", "zipfile", "webbrowser", "socket"}


def _keywords(call: ast.Call) -> set[str]:
    return {k.arg for k in call.keywords if k.arg}


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _mode(call: ast.Call, position: int) -> str | None:
    """The mode argument as a literal; "r" when absent; None when it is not a literal."""
    for keyword in call.keywords:
        if keyword.arg == "mode":
            return _literal(keyword.value)
    if len(call.args) > position:
        return _literal(call.args[position])
    return "r"


def problems_in(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func, keywords = node.func, _keywords(node)
        where = f"{filename}:{node.lineno}"
        if isinstance(func, ast.Attribute) and func.attr == "write_text":
            missing = {"encoding", "newline"} - keywords
            if missing:
                found.append(f"{where}: write_text without {', '.join(sorted(missing))}")
        elif isinstance(func, ast.Attribute) and func.attr == "read_text":
            if "encoding" not in keywords:
                found.append(f"{where}: read_text without encoding")
        else:
            if isinstance(func, ast.Name) and func.id == "open":
                mode = _mode(node, 1)
            elif isinstance(func, ast.Attribute) and func.attr == "fdopen":
                mode = _mode(node, 1)
            elif (
                isinstance(func, ast.Attribute)
                and func.attr == "open"
                and not (isinstance(func.value, ast.Name) and func.value.id in NOT_TEXT_OPENERS)
            ):
                mode = _mode(node, 0)  # pathlib: Path.open(mode, ...)
            else:
                continue
            if mode is None:
                found.append(f"{where}: open with a computed mode (cannot tell text from binary)")
            elif "b" not in mode:
                needed = {"encoding"} | ({"newline"} if set(mode) & set("wax+") else set())
                missing = needed - keywords
                if missing:
                    found.append(f"{where}: text open({mode!r}) without {', '.join(sorted(missing))}")
    return found


# In leaddb/backends, which the lead is refactoring (issue 9, items 1, 5, 10, 11): named by file
# and source line, so each entry must still match; delete it with the fix.
PENDING_IN_BACKENDS: set[tuple[str, str]] = set()


def test_every_text_write_and_read_is_explicit():
    found, pending = [], set()
    for path in SOURCES:
        name = path.relative_to(REPO).as_posix()
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for problem in problems_in(source, name):
            code = lines[int(problem.split(":")[1]) - 1].strip()
            if (name, code) in PENDING_IN_BACKENDS:
                pending.add((name, code))
            else:
                found.append(problem)
    assert not found, "\n".join(found)
    assert pending == PENDING_IN_BACKENDS, (
        f"fixed now, so take them out of PENDING_IN_BACKENDS: {PENDING_IN_BACKENDS - pending}"
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('p.write_text("x\\n")', "write_text without encoding, newline"),
        ('p.write_text("x\\n", encoding="utf-8")', "write_text without newline"),
        ("p.read_text()", "read_text without encoding"),
        ('p.open("a")', "text open('a') without encoding, newline"),
        ('open(name, "w", encoding="utf-8")', "text open('w') without newline"),
        ("open(name)", "text open('r') without encoding"),
        ('os.fdopen(fd, "w", encoding="utf-8")', "text open('w') without newline"),
        ("open(name, mode)", "open with a computed mode (cannot tell text from binary)"),
    ],
)
def test_the_check_finds_each_implicit_form(line, problem):
    assert [f.split(": ", 1)[1] for f in problems_in(line, "x.py")] == [problem]


@pytest.mark.parametrize(
    "line",
    [
        'p.write_text("x\\n", encoding="utf-8", newline="\\n")',
        'p.write_bytes(b"x\\r\\n")',
        'p.read_text(encoding="utf-8")',
        'p.open("rb")',
        'open(name, "w", encoding="utf-8", newline="\\n")',
        'open(name, encoding="utf-8")',
        "os.open(name, os.O_RDWR)",
        'gzip.open(name, "wb")',
    ],
)
def test_the_check_accepts_explicit_forms(line):
    assert problems_in(line, "x.py") == []


def _git(*args: str, stdin: str = "") -> str:
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        if os.environ.get("CI"):
            pytest.fail("git and the repository's .git are needed (CI is set: this test must run)")
        pytest.skip("not a git checkout")
    done = subprocess.run(
        [git, *args], cwd=REPO, input=stdin, capture_output=True, text=True, encoding="utf-8", check=True
    )
    return done.stdout


def test_every_tracked_file_is_lf_text_or_binary_by_gitattributes():
    """A checkout on Windows (core.autocrlf) gets LF for every text file: each one is `text`
    with `eol=lf` by .gitattributes, whatever git's guess; the rest is declared binary. The
    working tree is checked too: LF only, UTF-8."""
    files = _git("ls-files", "-z").split("\0")
    files = [name for name in files if name and (REPO / name).is_file()]
    attributes: dict[str, dict[str, str]] = {}
    for line in _git("check-attr", "--stdin", "text", "eol", "binary", stdin="\n".join(files)).splitlines():
        name, attribute, value = line.rsplit(": ", 2)
        attributes.setdefault(name, {})[attribute] = value
    wrong = []
    for name in files:
        got = attributes[name]
        if got["binary"] == "set":
            continue
        if (got["text"], got["eol"]) != ("set", "lf"):
            wrong.append(f"{name}: text={got['text']} eol={got['eol']} (add its type to .gitattributes)")
            continue
        content = (REPO / name).read_bytes()
        if b"\r" in content:
            wrong.append(f"{name}: carriage return in the working tree")
        try:
            content.decode("utf-8")
        except UnicodeDecodeError as exc:
            wrong.append(f"{name}: not UTF-8 (byte {exc.start})")
    assert not wrong, "\n".join(wrong)
