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
