"""Layered fixtures: one throwaway PostgreSQL 15 cluster per test session (the
library's own local backend), the migrations applied once into a template
database, then a fresh database per test cloned from it."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
from platform_marks import skip_off_platform

from leaddb import janitor, migrations, runner
from leaddb.backends.local import LocalBackend, find_binary, scratch_root
from leaddb.errors import BackendError

PROJECT_DIR = Path(__file__).resolve().parent.parent
TEMPLATE = "leaddb_template"
IN_CI = bool(os.environ.get("CI"))


def pytest_runtest_setup(item):
    skip_off_platform(item)


@pytest.fixture(scope="session")
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture(scope="session")
def migration_files() -> list[migrations.Migration]:
    return migrations.load(PROJECT_DIR)


@pytest.fixture(scope="session")
def local_backend():
    """A local cluster of the suite's own, in a state dir of its own; removed at the end."""
    try:
        find_binary("initdb")
    except BackendError as exc:  # one clear message for the run, not one error per test
        pytest.exit(f"the test suite needs the PostgreSQL 15 server binaries: {exc}", returncode=1)
    state_dir = Path(tempfile.mkdtemp(prefix="leaddb-tests-", dir=scratch_root()))  # 0700, ours
    backend = LocalBackend(PROJECT_DIR, state_dir=state_dir)
    try:
        yield backend
    finally:
        backend.down()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server(local_backend, migration_files):
    """The running server, with the template database migrated once."""
    local_backend.reset(migration_files)
    with janitor.maintenance(local_backend.conninfo("postgres")) as conn:
        janitor.create_database(conn, TEMPLATE)
    runner.apply(local_backend.conninfo(TEMPLATE), migration_files)
    return local_backend


@pytest.fixture
def fresh_db(server):
    """Factory: a new database, from the migrated template or empty; dropped after the test."""
    created = []

    def make(template: str | None = TEMPLATE) -> str:
        name = f"t_{secrets.token_hex(6)}"
        with janitor.maintenance(server.conninfo("postgres")) as conn:
            janitor.create_database(conn, name, template=template or "template0")
        created.append(name)
        return server.conninfo(name)

    yield make
    with janitor.maintenance(server.conninfo("postgres")) as conn:
        for name in created:
            janitor.drop_database(conn, name)


@pytest.fixture
def conn(fresh_db):
    """An autocommit connection to a fresh, fully migrated database."""
    with psycopg.connect(fresh_db(), autocommit=True) as connection:
        yield connection
