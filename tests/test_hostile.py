"""Never a green result on a wrong database (issue 17, §2), and the scratch databases a killed
run leaves (§1): on a server that is hostile in the ways a shared server is.

- Session settings that change what DDL creates or how the catalog reads back (a role's or a
  database's ``search_path``, ``default_table_access_method``, ``IntervalStyle``,
  ``quote_all_identifiers``; from the role, the database, the role in the database,
  ``PGOPTIONS`` or the DSN's own ``options``): the tasks pin their sessions' settings.
- A SQL_ASCII database: names come back as text, not bytes; names in no encoding at all are
  shown escaped, never a crash.
- A template database a killed ``db.reset --fast`` left half-built, or one planted: never cloned.
- The project's database named ``postgres``, ``template0``/``template1`` or over 63 bytes: refused
  on every backend before anything is touched.
- Scratch databases (bench, drift, status --detail, the tests'): marked, and swept by the next run
  once the run that made them is gone, never while it lives.

The scenes are set in-process through the library; one end-to-end run per kind of fault.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psycopg
import pytest
from dsn_scene import WAIT, Owned, ident
from psycopg import sql
from psycopg.conninfo import make_conninfo

from leaddb import catalog, fast, janitor, migrations, runner, verdict, workflow
from leaddb.backends.docker import DockerBackend
from leaddb.backends.dsn import DsnBackend
from leaddb.backends.local import LocalBackend
from leaddb.errors import BackendError, MigrationsPending, SchemaDrift
from leaddb.migrations import Migration

PROJECT_FILES = ("tasks.py", "docker-compose.yml", "Technical-Architecture-Specification.md")


def empty_database(scene, suffix: str = "", **options: str) -> str:
    """A database of the scene's, empty (template0); ``options``: CREATE DATABASE's, as SQL."""
    name = f"{scene.dbname}{suffix}"
    extra = " ".join(f"{key} {value}" for key, value in options.items())
    with scene.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 " + extra).format(ident(name)))
    return name


def tables_outside_public(conninfo: str) -> list[tuple[str, str]]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'public' "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
        ).fetchall()


def status_of(dsn: str, project_dir: Path):
    """``invoke db.status --backend dsn`` in-process: the report (its exception, when it has one)."""
    return workflow.status(workflow.Options(backend="dsn", dsn=dsn, project_dir=project_dir))


# -- session settings ------------------------------------------------------------------------------

# What each hostile setting is, and what the test prepares in the database for it.
SETTINGS = {
    "search_path = myschema, public": ("search_path", "myschema, public", "CREATE SCHEMA myschema"),
    "default_table_access_method = heap2": (
        "default_table_access_method",
        "heap2",
        "CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler",
    ),
    "IntervalStyle = iso_8601": ("IntervalStyle", "iso_8601", None),
    "quote_all_identifiers = on": ("quote_all_identifiers", "on", None),
}
SOURCES = ("role in database", "database", "role", "PGOPTIONS", "the DSN's options")


def hostile_dsn(scene, dbname: str, source: str, setting: str, value: str, monkeypatch) -> str:
    """The DSN a user passes, with ``setting = value`` coming from ``source``."""
    role, password = scene.role("app", "SUPERUSER")  # a role of the scene's: its settings are its own
    quoted = sql.SQL("SET {} = {}").format(
        ident(setting), sql.SQL(", ").join(sql.Literal(v.strip()) for v in value.split(","))
    )
    with scene.connect() as conn:
        if source == "role in database":
            conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} ").format(ident(role), ident(dbname)) + quoted)
        elif source == "database":
            conn.execute(sql.SQL("ALTER DATABASE {} ").format(ident(dbname)) + quoted)
        elif source == "role":
            conn.execute(sql.SQL("ALTER ROLE {} ").format(ident(role)) + quoted)
    dsn = scene.dsn(role, password, dbname=dbname)
    option = f"-c {setting}={value.replace(' ', '')}"
    if source == "PGOPTIONS":
        monkeypatch.setenv("PGOPTIONS", option)
    elif source == "the DSN's options":
        dsn = make_conninfo(dsn, options=option)
    return dsn


# Every place a session takes a setting from, with the setting; every setting, from the
# issue's place (the startup options the tasks send win over each place alike).
PAIRS = [("search_path = myschema, public", source) for source in SOURCES] + [
    (case, "role in database") for case in sorted(SETTINGS) if not case.startswith("search_path")
]


@pytest.mark.parametrize(("case", "source"), PAIRS)
def test_apply_and_status_hold_whatever_the_session_settings_say(
    scene, migration_files, template_db, project_dir, source, case, monkeypatch
):
    """The issue's case (a role's search_path put every table into myschema, exit 0, and status
    said "pending" forever), at its class: any setting that moves what DDL creates or how the
    catalog spells it, from wherever a session gets it."""
    setting, value, prepare = SETTINGS[case]
    dbname = empty_database(scene)
    if prepare:
        with psycopg.connect(scene.server.conninfo(dbname), autocommit=True) as conn:
            conn.execute(prepare)
    reference = catalog.snapshot_of(scene.server.conninfo(template_db))
    dsn = hostile_dsn(scene, dbname, source, setting, value, monkeypatch)
    with psycopg.connect(dsn) as conn:  # an ordinary session has it
        shown = conn.execute(sql.SQL("SELECT current_setting({})").format(setting)).fetchone()[0]
        assert shown.replace(" ", "") == value.replace(" ", "")
    DsnBackend(project_dir, dsn).apply(migration_files)
    assert tables_outside_public(scene.server.conninfo(dbname)) == []
    with psycopg.connect(scene.server.conninfo(dbname)) as conn:
        (methods,) = conn.execute(
            "SELECT array_agg(DISTINCT a.amname) FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
        ).fetchone()
    assert methods == ["heap"]
    assert catalog.snapshot_of(dsn) == reference  # read back through the hostile session too
    assert status_of(dsn, project_dir).summary() == "7 migration files: 7 applied"


def test_a_schema_named_as_the_role_takes_nothing(scene, migration_files, project_dir):
    """The default search_path is "$user", public: a schema named as the connecting role would
    take every table, without any setting anywhere."""
    role, password = scene.role("app", "SUPERUSER")
    dbname = empty_database(scene)
    with psycopg.connect(scene.server.conninfo(dbname), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(ident(role), ident(role)))
    dsn = scene.dsn(role, password, dbname=dbname)
    DsnBackend(project_dir, dsn).apply(migration_files)
    assert tables_outside_public(dsn) == []
    assert status_of(dsn, project_dir).summary() == "7 migration files: 7 applied"


def test_status_says_where_the_tables_are_when_another_search_path_put_them_elsewhere(
    scene, migration_files, project_dir, capsys
):
    """Tables an earlier apply (or psql with another search_path) put into another schema: status
    reads public only, as it must, and says pending; not silently: it names the schema."""
    dbname = empty_database(scene)
    with psycopg.connect(
        scene.server.conninfo(dbname), autocommit=True, options="-c search_path=myschema"
    ) as conn:
        conn.execute("CREATE SCHEMA myschema; CREATE EXTENSION btree_gist WITH SCHEMA public")
        for migration in migration_files[1:]:
            conn.execute(migration.text.replace("public.", "myschema.").encode())
    assert len(tables_outside_public(scene.server.conninfo(dbname))) == 13
    with pytest.raises(MigrationsPending):
        status_of(scene.dsn(dbname=dbname), project_dir)
    out = capsys.readouterr().out
    assert (
        "schema 'myschema' holds 13 of the tables the migrations create (buyer_offers, buyer_service_areas, "
        in out
    )
    assert "These tasks apply and read schema public only" in out


def test_the_psql_the_docker_backend_runs_gets_the_same_settings(monkeypatch):
    """Docker applies with psql inside the container: the same pinned settings, by environment."""
    from leaddb.backends.docker import psql

    seen = {}

    class Container:
        name = "c"

        def exec_run(self, argv, demux, environment=None):
            seen.update(environment or {})
            return 1, (b"", b"psql: error: stop here")

    with pytest.raises(BackendError):
        psql.apply(
            Container(),
            [],
            mounted=Path("/nowhere"),
            user="u",
            dbname="d",
            port=5432,
            reapply=False,
            project_dir=Path.cwd(),
        )
    assert seen["PGCLIENTENCODING"] == "UTF8"
    assert seen["PGOPTIONS"].endswith(runner.SESSION_OPTIONS)  # after the limits: the pinned ones win
    assert "-c search_path=public" in runner.SESSION_OPTIONS


# -- encoding --------------------------------------------------------------------------------------


def test_a_sql_ascii_database_reads_as_text_and_is_applied_and_clean(
    scene, migration_files, template_db, project_dir
):
    """The issue's case: in a SQL_ASCII database status and drift reported every object as extra
    or missing, names shown as b'…'."""
    dbname = empty_database(scene, ENCODING="SQL_ASCII", LC_COLLATE="'C'", LC_CTYPE="'C'")
    dsn = scene.dsn(dbname=dbname)
    DsnBackend(project_dir, dsn).apply(migration_files)
    live = catalog.snapshot_of(dsn)
    assert live == catalog.snapshot_of(scene.server.conninfo(template_db))
    assert all(isinstance(name, str) for _, name in live.objects)
    assert status_of(dsn, project_dir).summary() == "7 migration files: 7 applied"
    workflow.drift_check(workflow.Options(backend="dsn", dsn=dsn, project_dir=project_dir))


def test_names_in_no_encoding_in_a_sql_ascii_database_are_shown_not_a_crash(
    scene, migration_files, project_dir
):
    """SQL_ASCII stores whatever bytes a client sent: a LATIN1 client's name is not UTF-8."""
    dbname = empty_database(scene, ENCODING="SQL_ASCII", LC_COLLATE="'C'", LC_CTYPE="'C'")
    dsn = scene.dsn(dbname=dbname)
    DsnBackend(project_dir, dsn).apply(migration_files)
    with psycopg.connect(dsn, autocommit=True, client_encoding="SQL_ASCII") as conn:
        conn.execute(b'CREATE TABLE "caf\xe9" (x int); CREATE TABLE "na\xc3\xafve" (x int)')
    with pytest.raises(SchemaDrift) as drifted:
        status_of(dsn, project_dir)
    assert "table caf\\xe9 (extra)" in str(drifted.value)
    assert "table naïve (extra)" in str(drifted.value)


def test_a_migration_with_non_ascii_text_applies_to_a_sql_ascii_database(scene, tmp_path):
    dbname = empty_database(scene, ENCODING="SQL_ASCII", LC_COLLATE="'C'", LC_CTYPE="'C'")
    text = "BEGIN;\nCREATE TABLE menu (dish text CHECK (dish <> 'crème brûlée'));\nCOMMIT;\n"
    path = tmp_path / "0001_menu.sql"
    path.write_text(text, encoding="utf-8", newline="\n")
    runner.apply(scene.server.conninfo(dbname), [Migration(path, 1, text)])
    (check,) = catalog.snapshot_of(scene.server.conninfo(dbname)).of_kind("constraint")
    assert "crème brûlée" in check.get("definition")


# -- the fast reset's template ---------------------------------------------------------------------


def probe_files(migration_files: list[Migration], directory: Path, tag: str) -> list[Migration]:
    """The migrations and one more of this test's own: a template name no other test shares."""
    text = f"BEGIN;\nCREATE TABLE IF NOT EXISTS probe_{tag} (id int);\nCOMMIT;\n"
    path = directory / "0008_probe.sql"
    path.write_text(text, encoding="utf-8", newline="\n")
    return [*migration_files, Migration(path, 8, text)]


def drop_templates(scene, files) -> None:
    with scene.connect() as conn:
        janitor.drop_database(conn, fast.template_name(files))


@pytest.mark.parametrize(
    "planted", ["half-built, unmarked", "a mark for another database", "a mark of other files"]
)
def test_a_fast_reset_never_clones_an_incomplete_template(scene, migration_files, tmp_path, planted, capsys):
    """The issue's case: a half-built leaddb_tpl_<checksum> made every later --fast reset say
    "ready" on an empty database. Planted: no mark, a mark copied from another database, a mark
    naming another migration set."""
    files = probe_files(migration_files, tmp_path, scene.tag)
    template = fast.template_name(files)
    with scene.connect() as conn:
        janitor.create_database(conn, template, template="template0")
        runner.apply(scene.server.conninfo(template), files[:2])
        oid = janitor.database_oid(conn, template)
        complete = f"every migration of set {migrations.checksum(files)} applied"
        if planted != "half-built, unmarked":
            mark = (
                janitor.mark_text(fast.TEMPLATE, oid + 1, complete)
                if planted == "a mark for another database"
                else janitor.mark_text(fast.TEMPLATE, oid, "every migration of set 0123abcd applied")
            )
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident(template), sql.Literal(mark)))
    try:
        target = scene.dbname
        reference = scene.clean_apply(files)
        fast.reset(Owned(Path.cwd(), scene.server.conninfo("postgres"), target), files)
        assert f"fast: '{template}' is incomplete (its build was interrupted); building it again" in (
            capsys.readouterr().out
        )
        assert scene.snapshot(target) == reference
        fast.reset(
            Owned(Path.cwd(), scene.server.conninfo("postgres"), target), files
        )  # now from the template
        assert "incomplete" not in capsys.readouterr().out
        assert scene.snapshot(target) == reference
    finally:
        drop_templates(scene, files)


KILLED_BUILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from dsn_scene import Owned
    from leaddb import fast
    from leaddb.migrations import Migration
    base, target, *paths = sys.argv[1:]
    files = [Migration(Path(p), n, Path(p).read_text(encoding="utf-8")) for n, p in enumerate(paths, 1)]
    fast.reset(Owned(Path.cwd(), base, target), files)
    """
)


@pytest.mark.posix_only("kills a process by POSIX signal (SIGKILL: nothing of it runs after)")
@pytest.mark.parametrize("kill_name", ["SIGKILL", "SIGTERM"])  # by name: Windows has no SIGKILL
def test_a_fast_reset_killed_while_it_builds_its_template_leaves_nothing_cloned(
    scene, migration_files, tmp_path, kill_name
):
    """SIGKILL (no clean-up runs) or SIGTERM a build mid-way: the next fast reset builds again."""
    kill = getattr(signal, kill_name)
    gate = scene.gate()
    files = probe_files(migration_files, tmp_path, scene.tag)
    gated = tmp_path / "0009_gate.sql"
    gated.write_text(gate.migration("probe_gate", gated.name), encoding="utf-8", newline="\n")
    files.append(Migration(gated, 9, gated.read_text(encoding="utf-8")))
    template = fast.template_name(files)
    tests = str(Path(__file__).parent)
    building = subprocess.Popen(
        [sys.executable, "-c", KILLED_BUILD, scene.server.conninfo("postgres"), scene.dbname]
        + [str(f.path) for f in files],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([tests, *sys.path])},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        gate.wait_entered(building)
        building.send_signal(kill)
        building.communicate(timeout=WAIT)
        if kill == signal.SIGKILL:  # no clean-up ran: it is there, half-built
            assert template in scene.databases_like("leaddb\\_tpl\\_%")
        gate.release()
        fast.reset(Owned(Path.cwd(), scene.server.conninfo("postgres"), scene.dbname), files)
        assert scene.snapshot() == scene.clean_apply(files)
        assert scene.snapshot().get("table", "probe_gate")
    finally:
        if building.poll() is None:
            building.kill()
        gate.release()
        drop_templates(scene, files)


# -- the project's database name -------------------------------------------------------------------

BAD_NAMES = ["postgres", "template0", "template1", "x" * 64, "é" * 32, "leadgen_" + "é" * 28]


def _reason(name: str) -> str:
    return (
        "is the server's own" if name in janitor.RESERVED else "PostgreSQL keeps at most 63 (NAMEDATALEN - 1)"
    )


@pytest.mark.parametrize("name", BAD_NAMES)
def test_the_local_backend_refuses_such_a_database_name_before_touching_anything(
    project_dir, monkeypatch, name
):
    """The issue's case: POSTGRES_DB=postgres answered "internal error … bug", and then db.apply put
    the schema into 'postgres' with exit 0."""
    monkeypatch.setenv("POSTGRES_DB", name)
    state = Path(tempfile.mkdtemp(prefix="leaddb-tests-names-"))
    try:
        with pytest.raises(BackendError) as refused:
            LocalBackend(project_dir, state_dir=state).reset(verdict.load(project_dir))
        assert str(refused.value).startswith(f"refusing to create the {name!r} database: ")
        assert _reason(name) in str(refused.value)
        assert "set POSTGRES_DB (docker-compose.yml or .env) to a database of the project's own" in str(
            refused.value
        )
        assert not (state / "cluster").exists()
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_the_docker_backend_refuses_such_a_database_name_before_touching_the_engine(project_dir, name):
    environ = {**os.environ, "POSTGRES_DB": name, "DOCKER_HOST": "unix:///nonexistent/leaddb.sock"}
    backend = DockerBackend(project_dir, project_name=f"leaddb-tests-{secrets.token_hex(3)}", environ=environ)
    for attempt in (lambda: backend.reset([]), lambda: backend.apply([])):
        with pytest.raises(BackendError) as refused:
            attempt()
        assert _reason(name) in str(refused.value) and f"the {name!r} database" in str(refused.value)


@pytest.mark.parametrize("name", ["postgres", "template1"])
def test_no_backend_applies_into_the_servers_own_databases(scene, migration_files, name):
    """One rule for every backend's apply (the base class's), and for --fast."""
    owned = Owned(Path.cwd(), scene.server.conninfo("postgres"), name)
    with pytest.raises(BackendError, match=f"refusing to apply the migrations to the '{name}' database: "):
        owned.apply(migration_files)
    with pytest.raises(BackendError, match=f"refusing to recreate the '{name}' database: "):
        fast.reset(owned, migration_files)
    with psycopg.connect(scene.server.conninfo(name)) as conn:
        assert conn.execute("SELECT to_regclass('public.leads')").fetchone()[0] is None


def test_a_reset_with_a_reserved_name_is_one_message_end_to_end(project_dir, tmp_path):
    for name in PROJECT_FILES:
        shutil.copy(project_dir / name, tmp_path / name)
    shutil.copytree(project_dir / "api", tmp_path / "api")
    env = {
        **os.environ,
        "POSTGRES_DB": "template1",
        "LEADDB_STATE_DIR": tempfile.mkdtemp(prefix="leaddb-tests-"),
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "invoke", "db.reset", "--backend", "local"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(env["LEADDB_STATE_DIR"], ignore_errors=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(
        "refusing to create the 'template1' database: 'template1' is the server's own"
    )
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


# -- scratch databases -----------------------------------------------------------------------------


def test_a_scratch_database_is_marked_and_no_sweep_drops_it_while_it_lives(server):
    conninfo = server.conninfo("postgres")
    with janitor.scratch_database(conninfo, purpose="test") as name:
        with janitor.maintenance(conninfo) as conn:
            oid = janitor.database_oid(conn, name)
            (comment,) = conn.execute("SELECT shobj_description(%s, 'pg_database')", (oid,)).fetchone()
            assert janitor.is_marked(comment, oid, janitor.SCRATCH)
            assert f"test, made by pid {os.getpid()} on " in comment
            assert name not in janitor.sweep(conn)
            assert janitor.database_oid(conn, name) == oid
    with janitor.maintenance(conninfo) as conn:
        assert janitor.database_oid(conn, name) is None


SCRATCH_RUN = textwrap.dedent(
    """
    import sys, time
    from leaddb import janitor
    with janitor.scratch_database(sys.argv[1], purpose="bench") as name:
        print("made", name, flush=True)
        time.sleep(120)
    """
)


def start_scratch_run(conninfo: str) -> tuple[subprocess.Popen, str]:
    run = subprocess.Popen(
        [sys.executable, "-c", SCRATCH_RUN, conninfo],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not (line := run.stdout.readline()).startswith("made "):  # after what its sweep says
        assert line, run.communicate()[1][-600:]
    return run, line.split()[1]


@pytest.mark.posix_only("kills a process by POSIX signal (SIGKILL: nothing of it runs after)")
@pytest.mark.parametrize("kill_name", ["SIGKILL", "SIGTERM", "SIGINT"])  # by name: Windows has no SIGKILL
def test_a_killed_runs_scratch_database_is_swept_by_the_next_run(server, kill_name):
    """The issue's case: killed benches left unmarked leaddb_bench_<hex> databases nothing removes
    (SIGTERM 3 of 3, SIGINT 1 of 16). Whatever kills it, the next run's sweep leaves none."""
    kill = getattr(signal, kill_name)
    conninfo = server.conninfo("postgres")
    run, name = start_scratch_run(conninfo)
    assert name.startswith("leaddb_bench_")
    run.send_signal(kill)
    run.communicate(timeout=WAIT)
    deadline = time.monotonic() + WAIT
    with janitor.maintenance(conninfo) as conn:
        while janitor.database_oid(conn, name) is not None:  # the server ends the dead run's session
            janitor.sweep(conn)
            assert time.monotonic() < deadline, f"{name} was never swept"
            time.sleep(0.05)


def test_a_sweep_drops_nothing_it_cannot_prove_is_a_dead_runs(server):
    """Not unmarked databases of the same name pattern, not a mark made for another database, not
    a scratch database of a run that is alive (here another process's)."""
    conninfo = server.conninfo("postgres")
    unmarked, forged = f"leaddb_bench_{secrets.token_hex(4)}", f"leaddb_bench_{secrets.token_hex(4)}"
    live, name = start_scratch_run(conninfo)
    try:
        with janitor.maintenance(conninfo) as conn:
            for made in (unmarked, forged):
                janitor.create_database(conn, made, template="template0")
            text = janitor.mark_text(janitor.SCRATCH, janitor.database_oid(conn, name), "copied")
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident(forged), sql.Literal(text)))
            assert not set(janitor.sweep(conn)) & {unmarked, forged, name}
            assert all(janitor.database_oid(conn, n) for n in (unmarked, forged, name))
    finally:
        live.kill()
        live.communicate(timeout=WAIT)
        with janitor.maintenance(conninfo) as conn:
            for made in (unmarked, forged):
                janitor.drop_database(conn, made)
            deadline = time.monotonic() + WAIT
            while janitor.database_oid(conn, name) is not None and time.monotonic() < deadline:
                janitor.sweep(conn)
                time.sleep(0.05)


def test_someone_elses_session_keeps_a_dead_runs_scratch_database_until_it_ends(server):
    """Only a client session of someone else's holds the sweep back (the server's own workers,
    autovacuum's, do not): with one open on it the database stays; once it ends, it goes."""
    conninfo = server.conninfo("postgres")
    run, name = start_scratch_run(conninfo)
    run.kill()
    run.communicate(timeout=WAIT)
    with janitor.maintenance(conninfo) as conn:
        deadline = time.monotonic() + WAIT
        while conn.execute(  # the dead run's session, gone (the server notices by itself)
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the dead run's session never ended"
            time.sleep(0.05)
        with psycopg.connect(server.conninfo(name), application_name="someone else"):
            assert name not in janitor.sweep(conn)
            assert janitor.database_oid(conn, name) is not None
        assert name in janitor.sweep(conn)


def test_a_session_the_sweeper_may_not_inspect_keeps_a_dead_runs_scratch_database(scene):
    """Another role's session, seen by a role without pg_read_all_stats, has no backend_type
    (NULL): it still counts as someone else's, though the role could end it (pg_signal_backend)."""
    sweeper, password = scene.role("sweeper", "CREATEDB")
    other, other_password = scene.role("other")
    with scene.connect() as conn:
        conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(ident(sweeper)))
    conninfo = scene.dsn(sweeper, password, dbname="postgres")
    run, name = start_scratch_run(conninfo)
    run.kill()
    run.communicate(timeout=WAIT)
    try:
        with (
            psycopg.connect(scene.dsn(other, other_password, dbname=name)),
            psycopg.connect(conninfo) as conn,
        ):
            conn.autocommit = True
            deadline = time.monotonic() + WAIT
            while lock_held(scene, name):  # the dead run's session, and its lock, ended
                assert time.monotonic() < deadline, "the killed run's lock was never released"
                time.sleep(0.05)
            assert name not in janitor.sweep(conn)
            assert janitor.database_oid(conn, name) is not None
    finally:
        with scene.connect() as conn:
            conn.autocommit = True
            janitor.drop_database(conn, name)


def lock_held(scene, name: str) -> bool:
    key = janitor.scratch_lock_key(name)
    with scene.connect() as conn:
        return bool(
            conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1",
                ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
            ).fetchone()[0]
        )


def sessions_on(scene, dbname: str) -> list[tuple]:
    with scene.connect() as conn:
        return conn.execute(
            "SELECT pid, backend_type, application_name, state, query FROM pg_stat_activity "
            "WHERE datname = %s",
            (dbname,),
        ).fetchall()


def test_a_killed_dsn_bench_leaves_nothing_after_the_next_run(scene, project_dir, tmp_path):
    """End to end: `invoke db.bench --backend dsn` killed (SIGKILL) while a scratch database of its
    is there; the next task that makes one sweeps it, and says so."""
    for name in PROJECT_FILES:
        shutil.copy(project_dir / name, tmp_path / name)
    shutil.copytree(project_dir / "api", tmp_path / "api")
    env = {**os.environ, "INVOKE_DB_BACKEND": "dsn"}
    before = scene.databases_like("leaddb\\_bench\\_%")
    bench = subprocess.Popen(
        [sys.executable, "-m", "invoke", "db.bench", "--runs", "3", "--dsn", scene.dsn()],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT * 2
        # killed once a scratch database of its is marked as one: a run killed between CREATE
        # DATABASE and its COMMENT (two statements: CREATE DATABASE runs in no transaction) leaves
        # a database nothing proves is the tool's, which no sweep may drop. Its own: the mark's
        # note names the maker's pid (on a --dsn server other workers' benches run meanwhile)
        while not (
            left := {
                name
                for name in scene.databases_like("leaddb\\_bench\\_%") - before
                if scene.marked(name, janitor.SCRATCH)
                and f"made by pid {bench.pid} " in (scene.comment(name) or "")
            }
        ):
            assert bench.poll() is None, bench.communicate()
            assert time.monotonic() < deadline, "the bench never made a scratch database"
            time.sleep(0.01)
        bench.kill()
        bench.communicate(timeout=WAIT)
        left &= scene.databases_like("leaddb\\_bench\\_%")
        assert left, "the killed bench dropped its scratch database: nothing left to sweep"
        deadline = time.monotonic() + WAIT
        while lock_held(scene, *left):  # the server ends the dead run's session, and its lock
            assert time.monotonic() < deadline, "the killed bench's lock was never released"
            time.sleep(0.05)
        again = subprocess.run(
            [sys.executable, "-m", "invoke", "db.status", "--detail", "--dsn", scene.dsn()],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert "Traceback" not in again.stderr, again.stderr
        (swept,) = left
        assert f"dropped '{swept}', a scratch database left behind by a run that is gone" in again.stdout, (
            again.stdout,
            sessions_on(scene, swept),  # what kept it, if a session did
        )
        assert scene.databases_like("leaddb\\_bench\\_%") & left == set()
    finally:
        if bench.poll() is None:
            bench.kill()
