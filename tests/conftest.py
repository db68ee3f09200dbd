"""Layered fixtures: one PostgreSQL 15 server per test session (whichever is available, see
server_choice.py: --dsn/LEADDB_TEST_DSN, else the PostgreSQL binaries, else a Docker engine),
the migrations applied once into a template database, then a fresh database per test cloned
from it. Tests reach the server through the backend interface only."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import psycopg
import pytest
import server_choice
import windows_pass
from hypothesis import settings
from platform_marks import skip_off_platform, windows_semantics

from leaddb import compose, janitor, migrations, statedir, verdict
from leaddb.backends.local import find_binary

# No time limit per example: these machines get loaded (a first numpy call took 560 ms beside
# two CPU hogs), and a slow example is no wrong one. CI gates every landing: there the property
# tests draw the same examples on every run (a failure replays exactly, and a run never fails on
# a case the last one did not try); a developer's run keeps exploring, and what it finds
# becomes an @example.
settings.register_profile("developer", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
if not os.environ.get("LEADDB_MUTATION"):
    settings.load_profile("ci" if os.environ.get("CI") else "developer")

PROJECT_DIR = Path(__file__).resolve().parent.parent
IN_CI = bool(os.environ.get("CI"))
CHOICE = pytest.StashKey[server_choice.Choice]()
BINARIES_MISSING = pytest.StashKey[str]()
WINDOWS_SEMANTICS = pytest.StashKey[list[str]]()


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
    a directory of the run's own, never in the user's, on every platform: LEADDB_CACHE_DIR
    (statedir.user_dir), inherited by the tasks the tests run as commands."""
    config.stash[WINDOWS_SEMANTICS] = windows_semantics(os.environ)
    config.leaddb_cache_home = tempfile.mkdtemp(prefix="leaddb-tests-cache-")
    os.environ[statedir.CACHE_DIR_ENV] = os.path.join(config.leaddb_cache_home, "leaddb")
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
    return [config.stash[CHOICE].header, *config.stash[WINDOWS_SEMANTICS]]


def _interrupts_reach_the_tasks() -> None:
    """A shell runs a background job (``cmd &`` without job control, as a CI runner may) with
    SIGINT ignored, and a child inherits an ignored signal across exec: every task the suite
    starts would then ignore the Ctrl-C its tests send. A handler of the suite's own is reset
    to the default in each child instead (as in a terminal). SIGINT only: a SIGTERM or SIGHUP
    the runner ignores stays so."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    _interrupts_reach_the_tasks()
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and config.get_verbosity() < 0 and not config.getoption("no_header"):
        for line in (config.stash[CHOICE].header, *config.stash[WINDOWS_SEMANTICS]):
            reporter.write_line(line)  # -q hides the header, not these lines


def pytest_collection_modifyitems(config, items):
    """Under Windows semantics (.ci/run's second pass) the whole suite is collected, then the tests
    Windows semantics cannot change are deselected: tests/windows_pass.py says which, and why."""
    if not config.stash[WINDOWS_SEMANTICS]:
        return
    left_out = {item for item in items if windows_pass.deselected(item.path, _function_name(item))}
    if left_out:
        config.hook.pytest_deselected(items=[item for item in items if item in left_out])
        items[:] = [item for item in items if item not in left_out]
        line = (
            f"windows semantics: {len(left_out)} tests deselected, the same on every platform "
            "(tests/windows_pass.py: each reaches nothing Windows semantics changes; SQL through "
            "psycopg, text and data in memory)"
        )
        if hasattr(config, "workeroutput"):  # a pytest-xdist worker: its output is not shown
            config.workeroutput[DESELECTED_LINE] = line
        else:
            _say(config, line)


DESELECTED_LINE = "leaddb_windows_deselected"


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist's controller, as a worker ends: the line of the Windows pass's deselection,
    which each worker collected and deselected alike, said once."""
    line = getattr(node, "workeroutput", {}).get(DESELECTED_LINE)
    if line and not getattr(node.config, "leaddb_deselected_said", False):
        node.config.leaddb_deselected_said = True
        _say(node.config, "\n" + line)  # after the progress dots, on a line of its own


def _say(config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


def _function_name(item) -> str | None:
    """The test's function, by name, when it is a module-level function (the Windows pass's rule
    reads those); None for anything else (a method, a doctest): such a test runs."""
    if getattr(item, "cls", None) is not None:
        return None
    return getattr(item, "originalname", None)


def pytest_runtest_setup(item):
    skip_off_platform(item)
    server_choice.skip_missing_tools(item, binaries_missing=item.config.stash[BINARIES_MISSING], in_ci=IN_CI)


@pytest.fixture(scope="session")
def project_dir() -> Path:
    return PROJECT_DIR


@pytest.fixture(scope="session")
def migration_files() -> list[migrations.Migration]:
    return verdict.load(PROJECT_DIR)


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
def shared_server(request) -> bool:
    """Whether other pytest-xdist workers use the session's server meanwhile (a --dsn server;
    each worker starts a local or Docker one of its own): checks of the whole server's names
    then leave out those other tests make (server_choice.other_tests_name)."""
    return server_choice.shared_by_workers(request.config.stash[CHOICE].kind, os.environ)


@pytest.fixture(scope="session")
def keeper(server):
    """The session that makes, marks and drops the suite's own databases (``janitor``'s scratch
    databases) and holds their locks while the run lives: a run killed midway leaves marked
    databases, which the next run sweeps; no sweep drops a live run's."""
    with janitor.maintenance(server.conninfo("postgres")) as conn:
        janitor.sweep_once(conn)
        yield conn


@pytest.fixture(scope="session")
def template_db(server, keeper, migration_files) -> str:
    """A database with every migration applied, once per session; fresh ones are its copies."""
    name = janitor.create_scratch(keeper, "template")
    try:
        server.apply(migration_files, dbname=name)
        yield name
    finally:
        janitor.drop_scratch(keeper, name)


@pytest.fixture
def fresh_db(server, keeper, template_db):
    """Factory: a new database, from the migrated template (default) or empty (``None``);
    dropped after the test."""
    created = []

    def make(template: str | None = template_db) -> str:
        name = janitor.create_scratch(keeper, "t", template=template or "template0")
        created.append(name)
        return server.conninfo(name)

    yield make
    for name in created:
        janitor.drop_scratch(keeper, name)


@pytest.fixture
def scene(server):
    """The suite's server as a shared server (tests/dsn_scene.py): roles, databases, sessions and
    settings of the test's own, removed afterwards. Its superuser sets them up."""
    from dsn_scene import Scene

    server_choice.skip_unless_superuser(
        server.conninfo("postgres"), in_ci=IN_CI, needed_for="roles, sessions and settings of its own"
    )
    made = Scene(server)
    yield made
    made.remove()


@pytest.fixture
def conn(fresh_db):
    """An autocommit connection to a fresh, fully migrated database."""
    with psycopg.connect(fresh_db(), autocommit=True) as connection:
        yield connection
