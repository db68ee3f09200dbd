"""The DSN backend on a server that is not ours (issue 10): a reset builds the new database
beside the old one and swaps, so it never drops what it cannot rebuild; a server-side lock
refuses a second task; every failure is one message with the DSN masked.

The suite's server stands in for the shared server, whichever it is (the local cluster, the
Docker container, LEADDB_TEST_DSN's): the suite's own connection sets the scene (roles, databases,
sessions), the tasks connect over TCP with passwords, as a role of the scene's own. A gated
migration waits inside the server on a row of pg_database the test holds (shared by every
database; tests/printed.py), so the gate works on a server in a container as on one on this host.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from urllib.parse import quote

import printed
import psycopg
import pytest
from psycopg import sql
from server_choice import owned_elsewhere, skip_unless_superuser, tcp_address

from leaddb import catalog, janitor, migrations, runner
from leaddb.backends.dsn import MARKER_COMMENT, NEW_SUFFIX, OLD_SUFFIX, DsnBackend, lock_key, side_name
from leaddb.backends.local import free_port
from leaddb.errors import BackendError

PROJECT_FILES = ("tasks.py", "docker-compose.yml", "Technical-Architecture-Specification.md")
MIGRATIONS = Path("api/db/migrations")
WAIT = 60  # seconds: the bound of every polling loop


def ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


class Scene:
    """The suite's server as a shared server: its superuser sets up roles and databases for a
    test and removes them afterwards; ``dsn`` builds the connection strings users would pass,
    by default as ``admin``, a superuser of the scene's own with a password."""

    def __init__(self, server) -> None:
        self.server = server
        self.host, self.port = tcp_address(server.conninfo("postgres"))
        self.tag = secrets.token_hex(4)
        self.dbname = f"dsn_{self.tag}"
        self.roles: list[str] = []
        self.gates: list[Gate] = []
        self.admin, self.password = self.role("admin", "SUPERUSER")

    def connect(self) -> psycopg.Connection:
        """The suite's own connection to the server's 'postgres' database."""
        return psycopg.connect(self.server.conninfo("postgres"), autocommit=True)

    def role(self, name: str, *attributes: str) -> tuple[str, str]:
        role, password = f"dsn_{self.tag}_{name}", secrets.token_urlsafe(12)
        with self.connect() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} " + " ".join(attributes)).format(
                    ident(role), sql.Literal(password)
                )
            )
        self.roles.append(role)
        return role, password

    def dsn(self, role: str | None = None, password: str | None = None, *, dbname: str | None = None) -> str:
        role, password = role or self.admin, self.password if password is None else password
        return f"postgresql://{role}:{password}@{self.host}:{self.port}/{dbname or self.dbname}"

    def create(self, dbname: str | None = None, *, owner: str | None = None, marked: bool = True) -> None:
        """A database with one table holding one row, to tell it from a rebuilt one."""
        dbname, owner = dbname or self.dbname, owner or self.admin
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(ident(dbname), ident(owner)))
            if marked:
                conn.execute(
                    sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident(dbname), sql.Literal(MARKER_COMMENT))
                )
        with psycopg.connect(self.server.conninfo(dbname), autocommit=True) as conn:
            conn.execute("CREATE TABLE precious (note text); INSERT INTO precious VALUES ('still here')")

    def databases(self, *, reference: bool = False) -> set[str]:
        """The databases of this scene (and the reference database, if asked)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s OR (%s AND datname = %s)",
                (f"dsn\\_{self.tag}%", reference, f"dsnref_{self.tag}"),
            )
            return {r[0] for r in rows}

    def precious(self, dbname: str | None = None) -> list[str]:
        with psycopg.connect(self.server.conninfo(dbname or self.dbname)) as conn:
            return [r[0] for r in conn.execute("SELECT note FROM precious")]

    def comment(self, dbname: str | None = None) -> str | None:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (dbname or self.dbname,),
            ).fetchone()
            return row[0] if row else None

    def snapshot(self, dbname: str | None = None) -> catalog.Snapshot:
        return catalog.snapshot_of(self.server.conninfo(dbname or self.dbname))

    def clean_apply(self, files: list[migrations.Migration]) -> catalog.Snapshot:
        """The catalog of ``files`` applied once to a new database, as the reference."""
        name = f"dsnref_{self.tag}"
        with self.connect() as conn:
            janitor.create_database(conn, name)
        runner.apply(self.server.conninfo(name), files)
        return self.snapshot(name)

    def lock_holders(self, dbname: str | None = None) -> list[int]:
        key = lock_key(dbname or self.dbname)
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1",
                ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
            )
            return [r[0] for r in rows]

    def gate(self) -> Gate:
        """A gate of its own for a gated migration; opened (at the latest) by ``remove``."""
        gate = Gate(self, f"dsn_{self.tag}_gate_{len(self.gates)}")
        self.gates.append(gate)
        return gate

    def remove(self) -> None:
        for gate in self.gates:
            gate.release()  # a gated migration still waiting ends
        with self.connect() as conn:
            for name in self.databases(reference=True):
                conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(ident(name)))
                janitor.drop_database(conn, name)
            for role in self.roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident(role)))


class Gate(printed.Gate):
    """Holds a gated migration inside the server until the test releases it (tests/printed.py)."""

    def __init__(self, scene: Scene, name: str) -> None:
        super().__init__(name)
        self.scene = scene

    def migration(self, table: str, file: str = "0008_gate.sql") -> str:
        """Creates ``table``, then holds its transaction open until the gate is released;
        ``file``: its name, which the header names (the spec's file rules)."""
        header = f"-- migration: {MIGRATIONS.as_posix()}/{file}"
        return f"{header}\nBEGIN;\nCREATE TABLE {table} (id int);\n{self.sql()}COMMIT;\n"

    def entered(self, conninfo: str | None = None) -> bool:
        return super().entered(conninfo or self.scene.server.conninfo("postgres"))

    def wait_entered(self, process: subprocess.Popen) -> None:  # type: ignore[override]
        super().wait_entered(lambda: self.scene.server.conninfo("postgres"), process)

    def release(self) -> None:  # type: ignore[override]
        super().release(self.scene.server.conninfo("postgres"))
        if self.name not in self.scene.roles:  # the gate's role goes with the scene's
            self.scene.roles.append(self.name)


@pytest.fixture
def scene(server):
    skip_unless_superuser(
        server.conninfo("postgres"),
        in_ci=bool(os.environ.get("CI")),
        needed_for="roles and sessions of its own",
    )
    made = Scene(server)
    yield made
    made.remove()


class Workspace:
    """A copy of the project, run through ``python -m invoke``."""

    def __init__(self, project_dir: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="leaddb-dsn-"))
        for name in PROJECT_FILES:
            shutil.copy(project_dir / name, self.root / name)
        shutil.copytree(project_dir / "api", self.root / "api")
        self.root.chmod(0o755)
        self.env = {**os.environ, "INVOKE_DB_BACKEND": "dsn"}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "invoke", *args]

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(*args), cwd=self.root, env=self.env, capture_output=True, text=True, timeout=300
        )

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def write(self, name: str, content: str) -> Path:
        """A migration file, printed in the copy's spec as well (rule "printed in the spec")."""
        return printed.write_printed(self.root, name, content)

    def files(self) -> list[migrations.Migration]:
        return migrations.load(self.root)


@pytest.fixture
def workspace(project_dir):
    ws = Workspace(project_dir)
    yield ws
    shutil.rmtree(ws.root, ignore_errors=True)


def clean(result: subprocess.CompletedProcess, *secrets_: str) -> str:
    """The user-facing output, checked to carry no traceback and no secret."""
    text = result.stdout + result.stderr
    assert "Traceback" not in text, result.stderr
    for secret in secrets_:
        assert secret not in text
    return result.stderr


# -- names -------------------------------------------------------------------------------------


def test_the_lock_key_is_a_bigint_per_database_name():
    keys = {lock_key(name) for name in ("leadgen", "leadgen2", "Leadgen", "lead gen")}
    assert len(keys) == 4
    assert lock_key("leadgen") == lock_key("leadgen")
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert lock_key("leadgen") == int.from_bytes(
        __import__("hashlib").sha256(b"leaddb:leadgen").digest()[:8], "big", signed=True
    )


@pytest.mark.parametrize("dbname", ["leadgen", "x" * 50, "x" * 63, "é" * 31, "ab" * 31 + "c"])
def test_side_names_fit_the_servers_limit_and_never_become_the_target(dbname):
    for suffix in (NEW_SUFFIX, OLD_SUFFIX):
        name = side_name(dbname, suffix)
        assert len(name.encode()) <= 63 and name.endswith(suffix)
        assert name != dbname and name.encode()[:63] != dbname.encode()
    assert side_name(dbname, NEW_SUFFIX) != side_name(dbname, OLD_SUFFIX)
    assert side_name("x" * 63, NEW_SUFFIX) != side_name("x" * 62 + "y", NEW_SUFFIX)
    if len(dbname.encode()) + len(NEW_SUFFIX) <= 63:
        assert side_name(dbname, NEW_SUFFIX) == dbname + NEW_SUFFIX


@pytest.mark.parametrize("name", ["63 bytes", "quotes, spaces, capitals"])
def test_any_database_name_is_reset_in_place(scene, migration_files, name):
    prefix = f"dsn_{scene.tag}"
    scene.dbname = {
        "63 bytes": prefix + "_" + "x" * (62 - len(prefix)),  # side names hashed to fit
        "quotes, spaces, capitals": prefix + ' Mixed "Case" é',
    }[name]
    scene.create()
    backend = DsnBackend(Path.cwd(), scene.dsn(dbname=quote(scene.dbname)))
    assert backend.dbname == scene.dbname
    with backend.lock("db.reset"):
        backend.reset(migration_files)
    assert scene.databases() == {scene.dbname}
    assert scene.comment() == MARKER_COMMENT and scene.snapshot().get("table", "leads")


def test_a_template_database_is_refused(scene, migration_files):
    scene.create()
    with scene.connect() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(ident(scene.dbname)))
    backend = DsnBackend(Path.cwd(), scene.dsn())
    with pytest.raises(BackendError, match=f"database '{scene.dbname}' on .* is a template database"):
        with backend.lock("db.reset"):
            backend.reset(migration_files, force=True)
    assert scene.databases() == {scene.dbname} and scene.precious() == ["still here"]


def test_an_interrupted_build_drops_the_new_database_and_keeps_the_old(scene, migration_files, monkeypatch):
    scene.create()
    backend = DsnBackend(Path.cwd(), scene.dsn())
    applied, real_apply = [], backend.apply

    def apply_then_ctrl_c(files, **kwargs):
        applied.append(kwargs["dbname"])
        real_apply(files, **kwargs)
        raise KeyboardInterrupt  # Ctrl-C as the last file ends

    monkeypatch.setattr(backend, "apply", apply_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        with backend.lock("db.reset"):
            backend.reset(migration_files)
    assert applied == [f"{scene.dbname}{NEW_SUFFIX}"]  # it built beside the old one
    assert scene.databases() == {scene.dbname} and scene.precious() == ["still here"]
    assert scene.lock_holders() == []


# -- build, then swap ---------------------------------------------------------------------------


def test_a_failed_build_leaves_the_old_database_untouched_and_drops_the_new_one(scene, workspace):
    dsn = scene.dsn()
    scene.create()
    workspace.write(
        "0008_broken.sql",
        "-- migration: api/db/migrations/0008_broken.sql\n"
        "BEGIN;\nCREATE TABLE probe (x no_such_type);\nCOMMIT;\n",
    )
    result = workspace("db.reset", "--dsn", dsn)
    assert result.returncode == 1, result.stdout
    message = clean(result, scene.password)
    assert message.startswith('api/db/migrations/0008_broken.sql:3: type "no_such_type" does not exist')
    assert (
        f"next step: fix 0008_broken.sql; '{scene.dbname}{NEW_SUFFIX}' (the database being built) was "
        f"dropped; '{scene.dbname}' on user={scene.admin} password=*** dbname={scene.dbname} " in message
    )
    assert message.rstrip().endswith(" is unchanged")
    assert scene.precious() == ["still here"]
    assert scene.databases() == {scene.dbname}  # nothing half-built left


def test_a_reset_replaces_the_database_and_ends_the_sessions_on_it(scene, workspace):
    scene.create()
    other, password = scene.role("browser")
    with scene.connect() as conn:
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident(scene.dbname), ident(other)))
    browsing = psycopg.connect(scene.dsn(other, password), autocommit=True)  # someone's IDE
    try:
        result = workspace("db.reset", "--dsn", scene.dsn())
        assert result.returncode == 0, result.stderr
        clean(result, scene.password)
        with pytest.raises(psycopg.OperationalError):
            browsing.execute("SELECT 1")
    finally:
        browsing.close()
    assert scene.databases() == {scene.dbname}
    assert scene.comment() == MARKER_COMMENT
    assert scene.snapshot() == scene.clean_apply(workspace.files())
    with psycopg.connect(scene.server.conninfo(scene.dbname)) as conn:
        assert conn.execute("SELECT to_regclass('precious')").fetchone()[0] is None  # rebuilt


def test_sessions_the_role_may_not_end_are_named_and_nothing_changes(scene, workspace):
    owner, password = scene.role("owner", "CREATEDB")
    scene.create(owner=owner)
    with psycopg.connect(scene.server.conninfo(scene.dbname)) as superuser_session:
        pid, superuser = superuser_session.info.backend_pid, superuser_session.info.user
        result = workspace("db.reset", "--dsn", scene.dsn(owner, password))
        assert result.returncode == 1, result.stdout
        message = clean(result, password)
        assert message.startswith(
            f"database '{scene.dbname}' on user={owner} password=*** dbname={scene.dbname} "
            f"host={scene.host} port={scene.port} has sessions this role may not end "
            f"(pid {pid} of role '{superuser}'); nothing was changed"
        )
        assert "next step: close them" in message
    assert scene.precious() == ["still here"]
    assert scene.databases() == {scene.dbname}


def test_a_role_without_createdb_is_refused_before_anything_is_dropped(scene, workspace):
    role, password = scene.role("nocreate", "NOCREATEDB")
    scene.create(owner=role, marked=False)
    result = workspace("db.reset", "--dsn", scene.dsn(role, password), "--force")
    assert result.returncode == 1, result.stdout
    message = clean(result, password)
    assert message.startswith(
        f"role '{role}' on user={role} password=*** dbname={scene.dbname} host={scene.host} "
        f"port={scene.port} may not create databases (it has no CREATEDB), so a reset could not "
        f"rebuild '{scene.dbname}'; nothing was changed"
    )
    assert f'next step: as a superuser: ALTER ROLE "{role}" CREATEDB' in message
    assert scene.precious() == ["still here"]
    assert scene.databases() == {scene.dbname}


def test_a_database_of_another_role_is_refused_before_anything_is_created(scene, workspace):
    role, password = scene.role("creator", "CREATEDB")
    keeper, _ = scene.role("keeper")
    scene.create(owner=keeper)  # marked: the marker alone does not make it droppable
    for flags in ((), ("--force",)):
        result = workspace("db.reset", "--dsn", scene.dsn(role, password), *flags)
        assert result.returncode == 1, result.stdout
        message = clean(result, password)
        assert f"database '{scene.dbname}' on user={role} password=*** " in message
        assert f"belongs to role '{keeper}'; role '{role}' may not drop or rename it" in message
        assert f"next step: connect as '{keeper}' (or a superuser)" in message
        assert scene.precious() == ["still here"]
        assert scene.databases() == {scene.dbname}


def test_a_database_not_created_by_this_tool_needs_force(scene, workspace):
    scene.create(marked=False)
    refused = workspace("db.reset", "--dsn", scene.dsn())
    assert refused.returncode == 1
    assert clean(refused).startswith(f"database '{scene.dbname}' on ")
    assert "was not created by this tool" in refused.stderr and "pass --force" in refused.stderr
    assert scene.precious() == ["still here"]
    forced = workspace("db.reset", "--dsn", scene.dsn(), "--force")
    assert forced.returncode == 0, forced.stderr
    assert scene.databases() == {scene.dbname} and scene.comment() == MARKER_COMMENT


@pytest.mark.parametrize("dbname", ["postgres", "template1", "template0"])
def test_the_servers_own_databases_are_refused(scene, workspace, dbname):
    result = workspace("db.reset", "--dsn", scene.dsn(dbname=dbname), "--force")
    assert result.returncode == 1
    assert clean(result).startswith(f"refusing to recreate the '{dbname}' database")


@pytest.mark.parametrize("task", ["db.apply", "db.reapply"])
@pytest.mark.parametrize("target", ["no dbname", "postgres", "template1"])
def test_applies_never_go_into_the_servers_own_databases(scene, workspace, task, target):
    """A DSN without dbname connects to 'postgres': the schema must not land there (nor in a
    template, where every later database would inherit it)."""
    dsn = f"postgresql://{scene.admin}:{scene.password}@{scene.host}:{scene.port}"
    if target != "no dbname":
        dsn += f"/{target}"
    result = workspace(task, "--dsn", dsn)
    assert result.returncode == 1, result.stdout + result.stderr
    named = "names no database" if target == "no dbname" else f"names '{target}'"
    database = "postgres" if target == "no dbname" else target
    assert f"refusing to apply the migrations to the '{database}' database: the DSN {named}" in clean(
        result, scene.password
    )
    with scene.connect() as conn:
        assert owned_elsewhere(conn, [scene.admin], scene.dbname) == []


def test_what_an_interrupted_reset_left_is_dropped_by_the_next(scene, migration_files):
    """A crash after the swap's commit leaves the old database as a marked tombstone; one during
    the build, the half-built database (marked as soon as it exists)."""
    scene.create()
    scene.create(side_name(scene.dbname, OLD_SUFFIX))
    scene.create(side_name(scene.dbname, NEW_SUFFIX))
    backend = DsnBackend(Path.cwd(), scene.dsn())
    with backend.lock("db.reset"):
        backend.reset(migration_files)
    assert scene.databases() == {scene.dbname}
    assert scene.snapshot().get("table", "leads")


def test_a_foreign_database_in_the_way_is_refused_unless_forced(scene, migration_files):
    scene.create()
    in_the_way = side_name(scene.dbname, NEW_SUFFIX)
    scene.create(in_the_way, marked=False)
    backend = DsnBackend(Path.cwd(), scene.dsn())
    with pytest.raises(BackendError) as refused:
        with backend.lock("db.reset"):
            backend.reset(migration_files)
    assert str(refused.value).startswith(f"database '{in_the_way}' on ")
    assert f"is in the way: a reset of '{scene.dbname}' builds under that name" in str(refused.value)
    assert scene.precious(in_the_way) == ["still here"] and scene.precious() == ["still here"]
    with backend.lock("db.reset"):
        backend.reset(migration_files, force=True)
    assert scene.databases() == {scene.dbname}


def test_a_reset_killed_mid_build_leaves_the_old_database_and_releases_its_lock(scene, workspace):
    scene.create()
    gate = scene.gate()
    workspace.write("0008_gate.sql", gate.migration("probe_gate"))
    first = workspace.popen("db.reset", "--dsn", scene.dsn())
    gate.wait_entered(first)
    first.kill()  # SIGKILL; TerminateProcess on Windows: no clean-up runs
    first.communicate(timeout=WAIT)
    assert scene.precious() == ["still here"]
    assert scene.comment(side_name(scene.dbname, NEW_SUFFIX)) == MARKER_COMMENT
    deadline = time.monotonic() + WAIT
    while scene.lock_holders():  # the server ends the dead client's session, and its lock
        assert time.monotonic() < deadline, "the killed reset's lock was never released"
        time.sleep(0.05)
    printed.remove_printed(workspace.root, "0008_gate.sql")
    again = workspace("db.reset", "--dsn", scene.dsn())
    assert again.returncode == 0, again.stderr
    assert f"dropping '{scene.dbname}{NEW_SUFFIX}', left behind by an interrupted reset" in again.stdout
    assert scene.databases() == {scene.dbname}
    assert scene.snapshot() == scene.clean_apply(workspace.files())


# -- the task lock ------------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import psycopg
    from leaddb.backends import dsn
    backend = dsn.DsnBackend(Path.cwd(), sys.argv[1])
    with backend.lock(sys.argv[2], shared=sys.argv[3] == "shared"):
        session = dsn._held[next(iter(dsn._held))][0]
        print(session.info.backend_pid, flush=True)
        sys.stdin.readline()
    """
)


@pytest.fixture
def holder(scene):
    """Another process holding the task lock on the scene's database until the test ends."""
    started = []

    def hold(task: str, mode: str = "exclusive") -> tuple[subprocess.Popen, int]:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, scene.dsn(), task, mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        started.append(process)
        return process, int(process.stdout.readline())

    yield hold
    for process in started:
        if process.poll() is None:
            process.communicate("\n", timeout=WAIT)


def test_a_held_lock_refuses_others_naming_the_task_and_its_server_pid(scene, holder, migration_files):
    process, server_pid = holder("db.reset")
    assert scene.lock_holders() == [server_pid]
    backend = DsnBackend(Path.cwd(), scene.dsn())
    for task, shared in (("db.reset", False), ("db.apply", True), ("db.bench", False)):
        with pytest.raises(BackendError) as refused:
            with backend.lock(task, shared=shared):
                pytest.fail(f"{task} got a lock another process holds")
        message = str(refused.value)
        assert message.startswith(
            f"another db.reset of database '{scene.dbname}' on user={scene.admin} password=*** "
            f"dbname={scene.dbname} host={scene.host} port={scene.port} is running "
            f"(pid {server_pid}, its session on the server; client pid {process.pid})"
        )
        assert "next step: wait for it to finish; nothing was changed by this one" in message
        assert scene.password not in message
    other = DsnBackend(Path.cwd(), scene.dsn(dbname=f"{scene.dbname}_other"))
    with other.lock("db.reset"):  # a lock per database: another one is free
        pass


def test_applies_share_the_lock_and_exclude_a_reset(scene, holder):
    _, server_pid = holder("db.apply", "shared")
    backend = DsnBackend(Path.cwd(), scene.dsn())
    with backend.lock("db.reapply", shared=True):
        holders = scene.lock_holders()
        assert len(holders) == 2 and server_pid in holders
    with pytest.raises(BackendError, match=rf"another db.apply of database .* \(pid {server_pid}, "):
        with backend.lock("db.reset"):
            pytest.fail("a reset got the lock while an apply holds it")


def test_the_lock_is_reentrant_in_one_process_and_released_after(scene):
    first, second = DsnBackend(Path.cwd(), scene.dsn()), DsnBackend(Path.cwd(), scene.dsn())
    with first.lock("db.verify"):
        (held,) = scene.lock_holders()
        with second.lock("db.bench"):
            with first.lock("db.reset"):
                assert scene.lock_holders() == [held]
        assert scene.lock_holders() == [held]
    assert scene.lock_holders() == []


def test_a_killed_holder_leaves_no_lock_behind(scene, holder):
    process, _ = holder("db.reset")
    process.kill()
    process.wait(timeout=WAIT)
    backend = DsnBackend(Path.cwd(), scene.dsn())
    deadline = time.monotonic() + WAIT
    while scene.lock_holders():  # the server notices the closed connection
        assert time.monotonic() < deadline, "the killed holder's lock was never released"
        time.sleep(0.05)
    with backend.lock("db.reset"):
        pass


def test_four_parallel_resets_one_builds_the_others_are_refused(scene, workspace):
    """The winner holds the lock until the three others have been refused (a gate in its last
    migration), so exactly one succeeds whatever the start-up order."""
    scene.create()
    gate = scene.gate()
    workspace.write("0008_gate.sql", gate.migration("probe_gate"))
    processes = [workspace.popen("db.reset", "--dsn", scene.dsn()) for _ in range(4)]
    try:
        deadline = time.monotonic() + WAIT * 2
        while sum(p.poll() is not None for p in processes) < 3 or not gate.entered():
            assert time.monotonic() < deadline, "three resets were never refused while one built"
            time.sleep(0.05)
    finally:
        gate.release()
    outcomes = [(p.wait(timeout=WAIT * 2), *p.communicate()) for p in processes]
    assert sorted(code for code, _, _ in outcomes) == [0, 1, 1, 1], outcomes
    for code, out, err in outcomes:
        assert "Traceback" not in out + err and "UniqueViolation" not in out + err
        if code:
            assert err.startswith(f"another db.reset of database '{scene.dbname}' on user={scene.admin} "), (
                err
            )
            assert ", its session on the server; client pid " in err
    assert scene.databases() == {scene.dbname}
    assert scene.snapshot() == scene.clean_apply(workspace.files())


def test_four_parallel_resets_as_they_come(scene, workspace):
    """The issue's case as a user meets it: no gate, any interleaving."""
    processes = [workspace.popen("db.reset", "--dsn", scene.dsn()) for _ in range(4)]
    outcomes = [(p.wait(timeout=WAIT * 2), *p.communicate()) for p in processes]
    assert 0 in [code for code, _, _ in outcomes]
    for code, out, err in outcomes:
        assert code in (0, 1) and "Traceback" not in out + err, err
        if code:
            assert err.startswith(f"another db.reset of database '{scene.dbname}' on "), err
    assert scene.databases() == {scene.dbname}
    assert scene.snapshot() == scene.clean_apply(workspace.files())


# -- reaching the server ------------------------------------------------------------------------


def test_unreachable_server_and_wrong_password_are_one_message_each(scene, workspace):
    nowhere = f"postgresql://postgres:s3cret-nowhere@127.0.0.1:{free_port()}/{scene.dbname}"
    wrong = scene.dsn(password="wrong-" + scene.password[:6])
    # the next step follows libpq's reason where the connection is the task's own; the lock's
    # session on 'postgres' keeps its hint about that database
    hints = {
        "Connection refused": ("check that the server runs",),
        "password authentication failed": ("check the user and password", "check that the server runs"),
    }
    for dsn, user, host, reason in (
        (nowhere, "postgres", "127.0.0.1", "Connection refused"),
        (wrong, scene.admin, scene.host, "password authentication failed"),
    ):
        for task in ("db.reset", "db.apply"):
            result = workspace(task, "--dsn", dsn)
            assert result.returncode == 1, (task, result.stdout)
            message = clean(result, "s3cret-nowhere", "wrong-" + scene.password[:6])
            assert message.startswith(f"cannot connect to user={user} password=*** dbname="), message
            assert reason in message and f"host={host}" in message
            assert any(f"next step: {hint}" in message for hint in hints[reason]), message
    down = workspace("db.down", "--dsn", nowhere)  # down touches nothing, so it needs no server
    assert down.returncode == 0 and "is not ours to stop; nothing done" in down.stdout
    assert scene.databases() == set()


def test_without_connect_on_postgres_apply_runs_unlocked_and_reset_is_refused(scene, workspace):
    owner, password = scene.role("owner", "CREATEDB")
    scene.create(owner=owner)
    dsn = scene.dsn(owner, password)
    with scene.connect() as conn:
        conn.execute("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC")
    try:
        apply = workspace("db.apply", "--dsn", dsn)
        assert apply.returncode == 0, apply.stderr
        clean(apply, password)
        note = "note: db.apply runs without the task lock: the DSN's role cannot connect to the 'postgres'"
        assert note in apply.stdout
        reset = workspace("db.reset", "--dsn", dsn)
        assert reset.returncode == 1
        message = clean(reset, password)
        assert message.startswith(f"cannot connect to user={owner} password=*** dbname=postgres ")
        assert 'permission denied for database "postgres"' in message
        assert "so the role needs CONNECT on it" in message
    finally:
        with scene.connect() as conn:
            conn.execute("GRANT CONNECT ON DATABASE postgres TO PUBLIC")
    assert scene.precious() == ["still here"]
    assert scene.databases() == {scene.dbname}
