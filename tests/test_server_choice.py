"""Which server the suite runs on (server_choice.py), decided without one: the order (a DSN, then
the binaries, then a Docker engine), what is asked only when needed, what the header says, the
one message when nothing is there, the refusal of an existing server the suite cannot use, and
when a marked test skips. One test checks the CREATEDB refusal on the session's real server."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import psycopg
import pytest
import server_choice
from psycopg import sql
from psycopg.conninfo import make_conninfo
from server_choice import NoTestServer, choose, missing_tool

from leaddb import compose
from leaddb.errors import BackendError

BINDIR = Path("/usr/lib/postgresql/15/bin")
NOT_FOUND = "PostgreSQL 15 server binary 'initdb' not found on PATH or via pg_config"


class Asked:
    """A stand-in for a probe, remembering whether it was called."""

    def __init__(self, answer) -> None:
        self.answer, self.calls = answer, 0

    def __call__(self):
        self.calls += 1
        return self.answer


def pick(*, option=None, environ=None, bindir=None, engine=(False, "unix:///nowhere"), image="postgres:15"):
    docker, name = Asked(engine), Asked(image)
    choice = choose(
        option_dsn=option,
        environ=environ or {},
        pg_bindir=bindir,
        binaries_missing="" if bindir else NOT_FOUND,
        docker_answers=docker,
        image=name,
    )
    return choice, docker.calls, name.calls


def test_a_dsn_option_wins_over_the_environment_binaries_and_docker():
    choice, docker, _ = pick(
        option="host=db.example port=5433 user=ci password=s3cret dbname=postgres",
        environ={"LEADDB_TEST_DSN": "host=other"},
        bindir=BINDIR,
        engine=(True, "unix:///run/docker.sock"),
    )
    assert (choice.kind, choice.dsn) == (
        "dsn",
        "host=db.example port=5433 user=ci password=s3cret dbname=postgres",
    )
    assert docker == 0  # no engine is even asked
    assert "from --dsn" in choice.header and "password=***" in choice.header
    assert "s3cret" not in choice.header


def test_the_environment_dsn_wins_over_binaries():
    choice, docker, _ = pick(
        environ={"LEADDB_TEST_DSN": "postgresql://ci:pw@db.example/postgres"}, bindir=BINDIR
    )
    assert choice.kind == "dsn" and "from LEADDB_TEST_DSN" in choice.header
    assert "pw@" not in choice.header and docker == 0


def test_an_empty_dsn_counts_as_none():
    choice, _, _ = pick(option="", environ={"LEADDB_TEST_DSN": ""}, bindir=BINDIR)
    assert choice.kind == "local"


def test_binaries_win_over_docker_which_is_not_asked():
    choice, docker, image = pick(bindir=BINDIR, engine=(True, "unix:///run/docker.sock"))
    assert choice.kind == "local"
    assert choice.header == f"test server: local (a throwaway cluster of the PostgreSQL binaries in {BINDIR})"
    assert docker == 0 and image == 0


def test_without_binaries_a_docker_engine_runs_the_compose_image():
    choice, docker, image = pick(engine=(True, "npipe:////./pipe/docker_engine"), image="postgres:15")
    assert (choice.kind, choice.image) == ("docker", "postgres:15")
    assert docker == 1 and image == 1
    assert "image postgres:15 on the Docker engine at npipe:////./pipe/docker_engine" in choice.header
    assert "no PostgreSQL server binaries found" in choice.header


def test_nothing_at_all_is_one_message_naming_the_three_ways():
    choice, _, _ = pick(engine=(False, "no Docker engine answered at unix:///var/run/docker.sock"))
    assert choice.kind == "none"
    with pytest.raises(NoTestServer) as refused, server_choice.running(choice, Path(".")):
        pass
    message = str(refused.value)
    assert message.startswith("no PostgreSQL 15 server for the tests (")
    assert NOT_FOUND in message and "no Docker engine answered at unix:///var/run/docker.sock" in message
    assert "start Docker Desktop" in message and "install the PostgreSQL 15 server binaries" in message
    assert "LEADDB_TEST_DSN" in message and "CREATEDB" in message


def test_the_binaries_need_both_initdb_and_pg_ctl():
    def only_initdb(name: str) -> Path:
        if name == "initdb":
            return BINDIR / "initdb"
        raise BackendError(f"PostgreSQL 15 server binary {name!r} not found on PATH or via pg_config")

    assert server_choice.find_pg_binaries(only_initdb) == (
        None,
        "PostgreSQL 15 server binary 'pg_ctl' not found on PATH or via pg_config",
    )
    assert server_choice.find_pg_binaries(lambda name: BINDIR / name) == (BINDIR, "")


def test_an_existing_server_of_another_major_version_is_refused():
    message = server_choice.refusal("host=db", version=160002, user="ci", can_create=True)
    assert message.startswith("LEADDB_TEST_DSN: host=db is PostgreSQL 16; the schema and its tests are for")
    assert "next step: point LEADDB_TEST_DSN at a PostgreSQL 15 server" in message


def test_a_role_without_createdb_is_refused_with_the_fix():
    message = server_choice.refusal("host=db", version=150004, user="ci", can_create=False)
    assert message.startswith("LEADDB_TEST_DSN: role 'ci' on host=db cannot create databases")
    assert "next step: ALTER ROLE ci CREATEDB" in message
    assert server_choice.refusal("host=db", version=150004, user="ci", can_create=True) is None


def test_the_createdb_check_on_a_real_server(server):
    """The role of a LEADDB_TEST_DSN without CREATEDB stops the run; with it, the run goes on."""
    role, password = f"leaddb_nocreate_{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        try:
            as_role = make_conninfo(server.conninfo("postgres"), user=role, password=password)
            with pytest.raises(NoTestServer, match=rf"role '{role}' .* cannot create databases"):
                server_choice.check_can_create_databases(as_role)
            conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(role)))
            server_choice.check_can_create_databases(as_role)
        finally:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_docker_server_uses_the_compose_files_service_with_its_image_and_a_port_of_its_own(
    project_dir, tmp_path
):
    server_choice.throwaway_project(project_dir, tmp_path)
    user_settings = {
        "PATH": "/usr/bin",
        "POSTGRES_PASSWORD_FILE": "/run/secrets/mine",
        "POSTGRES_PORT": "5432",
        "COMPOSE_PROJECT_NAME": "mine",
    }
    environ = server_choice.docker_environ(user_settings, image="leaddb/postgres:15-local", port=54321)
    assert environ == {
        "PATH": "/usr/bin",
        "POSTGRES_IMAGE": "leaddb/postgres:15-local",
        "POSTGRES_PORT": "54321",
    }
    copy = compose.load_service(tmp_path, project_name="leaddb-tests-x", environ=environ)
    original = compose.load_service(project_dir, environ=environ)
    assert copy.image == "leaddb/postgres:15-local"
    assert [(p.host_ip, p.host_port) for p in copy.ports] == [("127.0.0.1", 54321)]
    assert copy.environment == original.environment and copy.mounts == original.mounts
    assert copy.command == (
        "postgres",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
    )
    assert sorted(p.name for p in (tmp_path / "api/db/migrations").iterdir()) == sorted(
        p.name for p in (project_dir / "api/db/migrations").iterdir()
    )
    # without POSTGRES_IMAGE the compose file's own default: what users get
    assert compose.load_service(tmp_path, environ={}).image == "postgres:15"


class Item:
    def __init__(self, *marks) -> None:
        self.marks = [m.mark for m in marks]

    def iter_markers(self, name=None):
        return [m for m in self.marks if name is None or m.name == name]


@pytest.mark.parametrize("marker", ["needs_pg_binaries", "needs_psql"])
def test_in_ci_a_marked_test_never_skips(marker):
    assert missing_tool({marker}, binaries_missing=NOT_FOUND, psql_found=False, in_ci=True) is None


def test_outside_ci_a_marked_test_skips_naming_what_to_install():
    binaries = missing_tool({"needs_pg_binaries"}, binaries_missing=NOT_FOUND, psql_found=True, in_ci=False)
    assert binaries.startswith("needs the PostgreSQL 15 server binaries (initdb, pg_ctl)")
    assert "apt-get install postgresql-15" in binaries and "EDB installer" in binaries
    psql = missing_tool({"needs_psql"}, binaries_missing="", psql_found=False, in_ci=False)
    assert psql.startswith("needs the psql client") and "apt-get install postgresql-client-15" in psql


def test_a_marked_test_runs_where_its_tool_is():
    assert missing_tool({"needs_pg_binaries"}, binaries_missing="", psql_found=False, in_ci=False) is None
    assert missing_tool({"needs_psql"}, binaries_missing=NOT_FOUND, psql_found=True, in_ci=False) is None
    assert missing_tool(set(), binaries_missing=NOT_FOUND, psql_found=False, in_ci=False) is None


def test_skip_missing_tools_reads_the_items_markers(monkeypatch):
    monkeypatch.setattr(server_choice.shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="needs the psql client"):
        server_choice.skip_missing_tools(Item(pytest.mark.needs_psql), binaries_missing="", in_ci=False)
    server_choice.skip_missing_tools(Item(pytest.mark.needs_psql), binaries_missing="", in_ci=True)
    server_choice.skip_missing_tools(Item(pytest.mark.slow), binaries_missing=NOT_FOUND, in_ci=False)


def test_the_windows_checklist_shows_what_the_header_says_there():
    windows = (Path(__file__).resolve().parents[1] / "docs" / "windows.md").read_text(encoding="utf-8")
    shown = [line for line in windows.splitlines() if line.startswith("test server: docker (")]
    choice, _, _ = pick(engine=(True, "npipe:////./pipe/docker_engine"), image="postgres:15")
    assert shown == [choice.header]


def test_a_tcp_server_is_reached_where_its_connection_string_says():
    assert server_choice.tcp_address("host=db.example port=6543 user=ci dbname=postgres") == (
        "db.example",
        6543,
    )
    assert server_choice.tcp_address("postgresql://ci:pw@127.0.0.1:55432/postgres") == ("127.0.0.1", 55432)


@pytest.mark.parametrize("in_ci", [False, True], ids=["outside CI: skipped", "in CI: fails"])
def test_tests_needing_a_superuser_stop_on_a_role_that_is_not_one(server, in_ci):
    role, password = f"leaddb_plain_{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )
        try:
            as_role = make_conninfo(server.conninfo("postgres"), user=role, password=password)
            outcome = pytest.fail.Exception if in_ci else pytest.skip.Exception
            with pytest.raises(
                outcome, match=r"needs a superuser on the test server \(roles\); .* is not one"
            ):
                server_choice.skip_unless_superuser(as_role, in_ci=in_ci, needed_for="roles")
            server_choice.skip_unless_superuser(server.conninfo("postgres"), in_ci=in_ci, needed_for="roles")
        finally:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


REACHES_INTO_THE_SERVER = re.compile(
    r"\bserver\.(cluster|client|service|spec|resources|container_name|dsn|_\w+)\b"
)


def test_no_test_reaches_into_the_session_servers_backend():
    """The session's server may be any backend: tests use its interface, never what one backend
    has (the local cluster's state file, the container, the DSN)."""
    tests = Path(__file__).resolve().parent
    found = [
        f"{path.relative_to(tests.parent).as_posix()}:{number}: {line.strip()}"
        for path in sorted(tests.rglob("*.py"))
        if path.name != Path(__file__).name
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if REACHES_INTO_THE_SERVER.search(line)
    ]
    assert not found, "\n".join(found)
    assert REACHES_INTO_THE_SERVER.search("state = server.cluster.state()")


def test_the_names_other_tests_make_meanwhile_are_told_from_the_servers_and_the_tasks_own():
    """On one --dsn server, xdist's other workers make and drop databases and roles while a test
    runs: what a check of "nothing outside ours changed" leaves out, and nothing else."""
    from leaddb import fast, janitor

    made_by_fixtures = [
        f"{janitor.SCRATCH_PREFIX}t_{secrets.token_hex(4)}",
        f"{janitor.SCRATCH_PREFIX}template_{secrets.token_hex(4)}",
        f"dsn_{secrets.token_hex(4)}",
        f"dsn_{secrets.token_hex(4)}_admin",
        f"dsnref_{secrets.token_hex(4)}",
        f"inputs_weak_{secrets.token_hex(4)}",
        f"leaddb_gate_{secrets.token_hex(4)}",
    ]
    assert all(server_choice.other_tests_name(name) for name in made_by_fixtures)
    not_theirs = ["postgres", "template1", "leadgen", "inputs_admin", f"{fast.TEMPLATE_PREFIX}{'ab' * 8}"]
    # the tasks' own scratch databases take the form too: so the filter is for a shared server only
    assert server_choice.other_tests_name(f"{janitor.SCRATCH_PREFIX}bench_{secrets.token_hex(4)}")
    assert server_choice.shared_by_workers("dsn", {"PYTEST_XDIST_WORKER_COUNT": "2"})
    for kind, count in (("dsn", "1"), ("dsn", ""), ("local", "2"), ("docker", "4")):
        assert not server_choice.shared_by_workers(kind, {"PYTEST_XDIST_WORKER_COUNT": count})
    assert not server_choice.shared_by_workers("dsn", {})
    assert not any(server_choice.other_tests_name(name) for name in not_theirs)
    ours = made_by_fixtures[2]
    assert not server_choice.other_tests_name(ours, (ours,))
