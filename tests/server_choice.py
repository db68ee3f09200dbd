"""Which PostgreSQL 15 server the test suite runs against: chosen once per run, named in the
pytest header (with ``-q``, which hides the header, on the first line), in this order:

1. ``--dsn`` or ``LEADDB_TEST_DSN``: any PostgreSQL 15 server. The suite creates and drops
   databases of its own there (and nothing else), so its role needs CREATEDB: checked once,
   before the first test that needs the server; without it the run stops with one message.
2. The PostgreSQL 15 server binaries (``initdb``, ``pg_ctl``): a local cluster of the suite's
   own in a private temporary state directory (the local backend).
3. A Docker engine: a container of docker-compose.yml's service and image (``postgres:15``;
   ``POSTGRES_IMAGE`` overrides, as for ``docker compose``) through the project's own Docker
   backend, on a throwaway copy of the project with a compose project name and a free loopback
   port of its own.

The server (or, on an existing one, every database the suite made) is removed at the end.
Tests reach it through the backend interface only: ``start()``, ``conninfo(dbname)``,
``apply(..., dbname=)``.

Tests that exercise the local backend itself are marked ``needs_pg_binaries``; tests that run
the host's ``psql`` client are marked ``needs_psql``. Where the tool is missing they skip,
naming what to install, except in CI (``CI`` set), where nothing skips: a CI run without them
deselects them explicitly, ``-m "not needs_pg_binaries and not needs_psql"``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from leaddb import compose, masking, verdict
from leaddb.backends.base import Backend
from leaddb.backends.dsn import mask
from leaddb.errors import BackendError, LeadDbError
from leaddb.spec import SPEC_FILENAME

DSN_ENV = "LEADDB_TEST_DSN"
SERVER_MAJOR = 15
PROJECT_PREFIX = "leaddb-tests-"
# A throwaway server: durability buys nothing and costs seconds (the local cluster runs so too).
DURABILITY_OFF = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
# What each marker needs, and what to install where it is missing.
TOOLS = {
    "needs_pg_binaries": "the PostgreSQL 15 server binaries (initdb, pg_ctl): install PostgreSQL 15 "
    "(Debian/Ubuntu: apt-get install postgresql-15; Windows: the EDB installer, its bin folder on PATH)",
    "needs_psql": "the psql client on PATH: install it (Debian/Ubuntu: apt-get install "
    "postgresql-client-15; Windows: the EDB installer, its bin folder on PATH)",
}


class NoTestServer(Exception):
    """The chosen server cannot be used: one message for the whole run, with the next step."""


@dataclass(frozen=True)
class Choice:
    kind: str  # "dsn", "local", "docker", or "none"
    detail: str  # where, and why this one: for the header
    dsn: str = ""
    image: str = ""

    @property
    def header(self) -> str:
        return f"test server: {self.kind} ({self.detail})"


def choose(
    *,
    option_dsn: str | None,
    environ: Mapping[str, str],
    pg_bindir: Path | None,
    binaries_missing: str,
    docker_answers: Callable[[], tuple[bool, str]],
    image: Callable[[], str],
) -> Choice:
    """The server for this run. ``docker_answers`` (which may wait for an engine) and ``image``
    are only called when neither a DSN nor the binaries are there."""
    dsn, source = (option_dsn, "--dsn") if option_dsn else (environ.get(DSN_ENV, ""), DSN_ENV)
    if dsn:
        return Choice("dsn", f"an existing server, {mask(dsn)}, from {source}", dsn=dsn)
    if pg_bindir is not None:
        return Choice("local", f"a throwaway cluster of the PostgreSQL binaries in {pg_bindir}")
    answers, where = docker_answers()
    if answers:
        name = image()
        return Choice(
            "docker",
            f"a throwaway container of image {name} on the Docker engine at {where}; "
            "no PostgreSQL server binaries found",
            image=name,
        )
    return Choice(
        "none",
        f"no {DSN_ENV} or --dsn; no PostgreSQL binaries: {binaries_missing}; no Docker engine: {where}",
    )


def find_pg_binaries(find: Callable[[str], Path]) -> tuple[Path | None, str]:
    """The directory of ``initdb`` and ``pg_ctl`` (what the local backend runs), or why not."""
    try:
        initdb = find("initdb")
        find("pg_ctl")
    except BackendError as exc:
        return None, exc.detail
    return initdb.parent, ""


def none_message(choice: Choice) -> str:
    return (
        f"no PostgreSQL 15 server for the tests ({choice.detail}).\n"
        "  next step: start Docker Desktop (or any Docker engine), or install the PostgreSQL 15 server "
        "binaries, or point LEADDB_TEST_DSN at a PostgreSQL 15 server where your role has CREATEDB"
    )


def missing_tool(markers: set[str], *, binaries_missing: str, psql_found: bool, in_ci: bool) -> str | None:
    """Why a test with these markers skips here, or None when it runs (always in CI: a CI run
    without the tools deselects those tests rather than skipping them)."""
    if in_ci:
        return None
    if "needs_pg_binaries" in markers and binaries_missing:
        return f"needs {TOOLS['needs_pg_binaries']}"
    if "needs_psql" in markers and not psql_found:
        return f"needs {TOOLS['needs_psql']}"
    return None


# -- the server's lifecycle --------------------------------------------------------------------


@contextmanager
def running(choice: Choice, project_dir: Path) -> Iterator[Backend]:
    """The chosen server, started; removed (or, on an existing server, left alone) afterwards.
    A failure to set it up is :class:`NoTestServer`."""
    if choice.kind == "none":
        raise NoTestServer(none_message(choice))
    start = {"dsn": _existing, "local": _local, "docker": _docker}[choice.kind]
    with start(choice, project_dir) as backend:
        yield backend


def _setup_failed(choice: Choice, exc: Exception) -> NoTestServer:
    return NoTestServer(masking.scrub(f"{choice.header} could not be set up: {exc}", choice.dsn))


@contextmanager
def _existing(choice: Choice, project_dir: Path) -> Iterator[Backend]:
    from leaddb.backends.dsn import DsnBackend

    try:
        backend = DsnBackend(project_dir, choice.dsn)
        backend.start()
    except LeadDbError as exc:
        raise _setup_failed(choice, exc) from None
    check_can_create_databases(backend.conninfo("postgres"))
    yield backend


def check_can_create_databases(conninfo: str) -> None:
    """Once per run: the server is PostgreSQL 15 and the role may create databases, which every
    test that needs a server does (from the 'postgres' maintenance database)."""
    where = mask(conninfo)
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            version = conn.info.server_version
            user, allowed = conn.execute(
                "SELECT current_user, rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
    except psycopg.Error as exc:
        raise NoTestServer(
            f"{DSN_ENV}: cannot connect to the 'postgres' maintenance database, {where}: "
            f"{masking.scrub(str(exc).strip(), conninfo)}\n  next step: the suite creates and drops its "
            "databases from 'postgres'; let the role connect to it"
        ) from None
    refused = refusal(where, version=version, user=user, can_create=allowed)
    if refused:
        raise NoTestServer(refused)


def refusal(where: str, *, version: int, user: str, can_create: bool) -> str | None:
    """Why an existing server cannot host the suite, or None."""
    if version // 10000 != SERVER_MAJOR:
        return (
            f"{DSN_ENV}: {where} is PostgreSQL {version // 10000}; the schema and its tests are for "
            f"PostgreSQL {SERVER_MAJOR}\n  next step: point {DSN_ENV} at a PostgreSQL {SERVER_MAJOR} server"
        )
    if not can_create:
        return (
            f"{DSN_ENV}: role {user!r} on {where} cannot create databases, and the suite creates and "
            f"drops databases of its own there\n  next step: ALTER ROLE {user} CREATEDB (as a "
            f"superuser), or point {DSN_ENV} at a role that has CREATEDB"
        )
    return None


@contextmanager
def _local(choice: Choice, project_dir: Path) -> Iterator[Backend]:
    from leaddb.backends.local import LocalBackend, scratch_root

    state_dir = Path(tempfile.mkdtemp(prefix=PROJECT_PREFIX, dir=scratch_root()))
    backend = LocalBackend(project_dir, state_dir=state_dir)
    try:
        try:
            backend.reset(verdict.load(project_dir))
        except LeadDbError as exc:
            raise _setup_failed(choice, exc) from None
        yield backend
    finally:
        try:
            backend.down()
        finally:
            shutil.rmtree(state_dir, ignore_errors=True)


def throwaway_project(project_dir: Path, destination: Path) -> None:
    """What the Docker backend reads of the project: the compose file, with the server's
    durability off (a throwaway server), the migrations it mounts and the spec that declares
    where they are."""
    document = yaml.safe_load((project_dir / compose.COMPOSE_FILENAME).read_text(encoding="utf-8"))
    command = ["postgres"]
    for setting in DURABILITY_OFF:
        command += ["-c", setting]
    document["services"][compose.SERVICE]["command"] = command
    (destination / compose.COMPOSE_FILENAME).write_text(
        yaml.safe_dump(document, sort_keys=False), encoding="utf-8", newline="\n"
    )
    shutil.copytree(project_dir / "api", destination / "api")
    shutil.copy(project_dir / SPEC_FILENAME, destination / SPEC_FILENAME)


def docker_environ(environ: Mapping[str, str], *, image: str, port: int) -> dict[str, str]:
    """The compose file's defaults, but for the image and a free port: none of the user's own
    POSTGRES_* or COMPOSE_* settings (a password file, another project) reaches the copy."""
    kept = {k: v for k, v in environ.items() if not k.startswith(("POSTGRES_", "COMPOSE_"))}
    return {**kept, "POSTGRES_IMAGE": image, "POSTGRES_PORT": str(port)}


def ensure_image(image: str) -> None:
    """On the engine, as ``docker compose up`` would have it: pulled when missing."""
    import docker.errors  # (and docker itself)

    client = docker.from_env(timeout=300)
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        try:
            client.images.pull(image)
        except docker.errors.APIError as exc:
            raise BackendError(
                f"image {image} (docker-compose.yml, POSTGRES_IMAGE) is not on the engine and cannot be "
                f"pulled: {exc.explanation or exc}",
                hint="`docker pull` it; where nothing can be pulled, build the local image with "
                "`bash docker/postgres15/build-image.sh` and set POSTGRES_IMAGE=leaddb/postgres:15-local",
            ) from None
    finally:
        client.close()


@contextmanager
def _docker(choice: Choice, project_dir: Path) -> Iterator[Backend]:
    from leaddb.backends.docker import DockerBackend
    from leaddb.backends.local import free_port

    copy = Path(tempfile.mkdtemp(prefix=PROJECT_PREFIX))
    backend = None
    try:
        try:
            throwaway_project(project_dir, copy)
            ensure_image(choice.image)
            backend = DockerBackend(
                copy,
                project_name=f"{PROJECT_PREFIX}{secrets.token_hex(4)}",
                environ=docker_environ(os.environ, image=choice.image, port=free_port()),
            )
            backend.reset(verdict.load(copy))
            backend.start()
        except LeadDbError as exc:
            raise _setup_failed(choice, exc) from None
        yield backend
    finally:
        try:
            if backend is not None:
                backend.down()  # the container, its volume and network, by their labels
        finally:
            shutil.rmtree(copy, ignore_errors=True)


def tcp_address(conninfo: str) -> tuple[str, int]:
    """Where a ``--dsn`` user reaches the server over TCP: the connection string's host and port,
    or, for a server reached through a Unix socket (the local cluster), loopback on its port."""
    params = conninfo_to_dict(conninfo)
    host = params.get("host") or ""
    if host and not host.startswith("/"):
        return host, int(params.get("port") or 5432)
    with psycopg.connect(conninfo, connect_timeout=10) as conn:
        return "127.0.0.1", int(conn.execute("SHOW port").fetchone()[0])


# The names the suite's fixtures give the databases and roles they make and remove (janitor's
# leaddb_t_<hex>, a scene's dsn_<hex>_admin, an arena's inputs_<hex>...: secrets.token_hex(4)).
# On a server shared by --dsn, pytest-xdist's other workers make and drop such names while a test
# runs: a test that checks the server's names outside its own leaves these out, there and only
# there (``shared_by_workers``). The tasks' scratch databases (leaddb_bench_<hex>, leaddb_spec_…)
# take this form too, so on such a server a task's scratch database left behind goes unseen by
# that check: with a server of each worker's own (the local cluster, a container: CI) nothing is
# left out.
OTHER_TESTS_NAME = re.compile(r"[a-z]+(?:_[a-z]+)*_[0-9a-f]{8}(?:_[a-z]+)?")


def shared_by_workers(server_kind: str, environ: Mapping[str, str]) -> bool:
    """Whether other pytest-xdist workers use the same server meanwhile: a ``--dsn`` server (each
    worker starts a local or Docker server of its own), with more than one worker."""
    return server_kind == "dsn" and int(environ.get("PYTEST_XDIST_WORKER_COUNT") or 1) > 1


def other_tests_name(name: str, ours: tuple[str, ...] = ()) -> bool:
    """Whether ``name`` is one another test of the suite may make or drop meanwhile (not ``ours``)."""
    return name not in ours and OTHER_TESTS_NAME.fullmatch(name) is not None


def owned_elsewhere(conn: psycopg.Connection, roles: list[str], database: str) -> list[tuple[str, int]]:
    """What ``roles`` own in databases other than ``database`` (``pg_shdepend``), per database:
    for tests whose tasks must write into their own database and nowhere else."""
    return conn.execute(
        """SELECT d.datname, count(*) FROM pg_shdepend s
           JOIN pg_database d ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.refobjid
           WHERE s.refclassid = 'pg_authid'::regclass AND s.deptype = 'o'
             AND r.rolname = ANY(%s) AND d.datname <> %s
           GROUP BY 1 ORDER BY 1""",
        (roles, database),
    ).fetchall()


def skip_unless_superuser(conninfo: str, *, in_ci: bool, needed_for: str) -> None:
    """For tests that set up roles and sessions of their own: the suite's role must be a
    superuser, which it is on the servers the suite makes (local, Docker); on LEADDB_TEST_DSN's
    it may not be: skipped there, with why (in CI, where the servers are the suite's own, it fails)."""
    with psycopg.connect(conninfo, connect_timeout=10) as conn:
        (superuser,) = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if not superuser:
        reason = f"needs a superuser on the test server ({needed_for}); {mask(conninfo)} is not one"
        if in_ci:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def skip_missing_tools(item, *, binaries_missing: str, in_ci: bool) -> None:
    """From ``pytest_runtest_setup``: skip a marked test whose tool is missing (never in CI)."""
    markers = {m.name for m in item.iter_markers() if m.name in TOOLS}
    if not markers:
        return
    reason = missing_tool(
        markers, binaries_missing=binaries_missing, psql_found=shutil.which("psql") is not None, in_ci=in_ci
    )
    if reason:
        pytest.skip(reason)
