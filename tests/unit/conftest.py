"""Fast tests that need no server: no fixture here starts one, and none from tests/conftest.py
that does (``server``, ``fresh_db``, ``conn``, ``local_backend``) may be used in this folder.

The mutation-testing session (``nox -s mutation``) runs only these tests for each mutant."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings
from unit_support import COMPOSE, DECLARATION, SPEC_HEAD, compliant, printed

# per mutant, a few deterministic examples: fast, and the same verdict on every run
settings.register_profile("mutation", max_examples=10, derandomize=True, deadline=None)
if os.environ.get("LEADDB_MUTATION"):
    settings.load_profile("mutation")


SERVER_FIXTURES = {"server", "fresh_db", "conn", "local_backend"}


def pytest_collection_modifyitems(items):
    """Keep this folder server-free: the mutation session runs it once per mutant."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents and SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            raise pytest.UsageError(f"{item.nodeid} uses a server fixture; move it out of tests/unit/")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    """Each test starts with an empty per-user cache: what a test proves of the rules it proves
    by running them, never by finding a verdict an earlier test left (and the mutation session,
    which picks the tests that run a function, sees every test that judges run the rules)."""
    monkeypatch.setenv("LEADDB_CACHE_DIR", str(tmp_path_factory.mktemp("cache") / "leaddb"))


@pytest.fixture
def make_project(tmp_path):
    """Factory: a project (spec, compose file, migrations directory) holding ``files``."""

    def make(
        files: dict[str, str | bytes] | None = None,
        *,
        spec: str = SPEC_HEAD + DECLARATION,
        compose: str = COMPOSE,
        print_files: bool = True,
    ) -> Path:
        """``print_files``: the spec prints each file as its block (rule "printed in the spec")."""
        directory = tmp_path / "api/db/migrations"
        directory.mkdir(parents=True, exist_ok=True)
        files = files if files is not None else {"0001_first.sql": compliant("0001_first.sql")}
        for name, content in files.items():
            data = content.encode("utf-8") if isinstance(content, str) else content
            (directory / name).write_bytes(data)
        if print_files:
            spec += printed(files)
        (tmp_path / "Technical-Architecture-Specification.md").write_text(
            spec, encoding="utf-8", newline="\n"
        )
        (tmp_path / "docker-compose.yml").write_text(compose, encoding="utf-8", newline="\n")
        return tmp_path

    return make
