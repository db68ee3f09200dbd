"""Layered fixtures: one PostgreSQL 15 server per test session (whichever is available, see
server_choice.py: --dsn/LEADDB_TEST_DSN, else the PostgreSQL binaries, else a Docker engine),
the migrations applied once into a template database, then a fresh database per test cloned
from it. Tests reach the server through the backend interface only."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
import server_choice
from platform_marks import skip_off_platform

from leaddb import compose, janitor, migrations
from leaddb.backends.local import find_binary

PROJECT_DIR = Path(__file__).resolve().parent.parent
IN_CI = bool(os.environ.get("CI"))
CHOICE = pytest.StashKey[server_choice.Choice]()
BINARIES_MISSING = pytest.StashKey[str]()


def pytest_addoption(parser):
    parser.addoption(
        "--dsn",
        default=None,
        help=f"libpq connection string of a PostgreSQL 15 server to run the tests on (or set "
        f"{server_choice.DSN_ENV}); the role needs CREATEDB: the suite creates and drops its own databases",
    )


def pytest_configure(config):
    """Which server this run uses, decided once (the header says which). The run's tasks keep
    their per-user directory (drift's cached expected schema, the Docker backend's locks) in
    a directory of the run's own, never in the user's: platformdirs reads XDG_CACHE_HOME (on
    Linux; elsewhere the user's own directory is used)."""
    config.leaddb_cache_home = tempfile.mkdtemp(prefix="leaddb-tests-cache-")
    os.environ["XDG_CACHE_HOME"] = config.leaddb_cache_home
    bindir, missing = server_choice.find_pg_binaries(find_binary)
    config.stash[BINARIES_MISSING] = missing
    config.stash[CHOICE] = server_choice.choose(
        option_dsn=config.getoption("--dsn"),
        environ=os.environ,
        pg_bindir=bindir,
        binaries_missing=missing,
        docker_answers=_docker_answers,
        image=lambda: compose.load_service(PROJECT_DIR).image,
    )


def pytest_unconfigure(config):
    home = getattr(config, "leaddb_cache_home", "")
    if home:
        _remove_local_state()
        shutil.rmtree(home, ignore_errors=True)


def _remove_local_state() -> None:
    """What the run's tasks left under the run's user directory: state directories and the
    shared pristine on the RAM disk, any server still running in them (``db.down --all``)."""
    from leaddb.backends.local import remove_everything

    try:
        remove_everything(lambda line: None)
    except Exception as exc:  # noqa: BLE001 - the run is over; say it, do not hide its result
        print(f"leaddb tests: the run's local state was not all removed: {exc}")


def _docker_answers() -> tuple[bool, str]:
    from leaddb.backends.docker import engine  # docker-py, imported only when it is asked

    answers, where = engine.answers()
    return answers, engine.default_address() if answers else where


def pytest_report_header(config):
    return [config.stash[CHOICE].header]


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and config.get_verbosity() < 0 and not config.getoption("no_header"):
        reporter.write_line(config.stash[CHOICE].header)  # -q hides the header, not this line


def pytest_runtest_setup(item):
    skip_off_platform(item)
    server_choice.skip_missing_tools(item, binaries_missing=item.config.stash[BINARIES_MISSING], in_ci=IN_CI)


@pytest.fixture(scope="session")
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture(scope="session")
def migration_files() -> list[migrations.Migration]:
    return migrations.load(PROJECT_DIR)


@pytest.fixture(scope="session")
def server(request):
    """The session's server, started (a backend: ``conninfo(dbname)``, ``apply(..., dbname=)``);
    a server that cannot be had stops the run with one message rather than failing every test."""
    choice = request.config.stash[CHOICE]
    running = server_choice.running(choice, PROJECT_DIR)
    try:
        backend = running.__enter__()
    except server_choice.NoTestServer as exc:
        pytest.exit(str(exc), returncode=1)
    try:
        yield backend
    finally:
        running.__exit__(None, None, None)


@pytest.fixture(scope="session")
def template_db(server, migration_files) -> str:
    """A database with every migration applied, once per session; fresh ones are its copies."""
    name = f"leaddb_template_{secrets.token_hex(4)}"
    with janitor.maintenance(server.conninfo("postgres")) as conn:
        janitor.create_database(conn, name)
    try:
        server.apply(migration_files, dbname=name)
        yield name
    finally:
        with janitor.maintenance(server.conninfo("postgres")) as conn:
            janitor.drop_database(conn, name)


@pytest.fixture
def fresh_db(server, template_db):
    """Factory: a new database, from the migrated template (default) or empty (``None``);
    dropped after the test."""
    created = []

    def make(template: str | None = template_db) -> str:
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
