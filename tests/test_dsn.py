"""The DSN backend on a server that is not ours (issue 10): a reset builds the new database
beside the old one and swaps, so it never drops what it cannot rebuild; a server-side lock
refuses a second task; every failure is one message with the DSN masked.

The suite's server stands in for the shared server, whichever it is (the local cluster, the
Docker container, LEADDB_TEST_DSN's): the suite's own connection sets the scene (roles, databases,
sessions), the tasks connect over TCP with passwords, as a role of the scene's own. A gated
migration waits inside the server on a row of pg_database the test holds (shared by every
database; tests/printed.py), so the gate works on a server in a container as on one on this host.
Refusals whose proof is the message and an unchanged server run the task in process
(``workspace.in_process``: the same argument handling, checks and message as ``invoke``); the
builds, swaps, kills and races run ``python -m invoke`` as users do.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import quote

import printed
import psycopg
import psycopg.rows
import pytest
from dsn_scene import WAIT, Scene, ident
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from psycopg import sql
from server_choice import owned_elsewhere
from workspace import Workspace, clean

from leaddb import janitor, migrations
from leaddb.backends import database
from leaddb.backends.dsn import NEW_SUFFIX, OLD_SUFFIX, DsnBackend, lock_key, side_name
from leaddb.backends.local import free_port
from leaddb.errors import BackendError


@pytest.fixture
def workspace(project_dir):
    ws = Workspace(project_dir, prefix="leaddb-dsn-", env={"INVOKE_DB_BACKEND": "dsn"})
    yield ws
    ws.remove()


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
    assert scene.marked() and scene.snapshot().get("table", "leads")


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


def reset(scene, files, *, role: str | None = None, password: str | None = None, **flags) -> None:
    """One reset through the library, as ``invoke db.reset --backend dsn`` makes it."""
    backend = DsnBackend(Path.cwd(), scene.dsn(role, password))
    with backend.lock("db.reset"):
        backend.reset(files, **flags)


def refusal(scene, files, **kwargs) -> str:
    with pytest.raises(BackendError) as refused:
        reset(scene, files, **kwargs)
    return str(refused.value)


class App:
    """Another client's session on a database: a role of its own, an open transaction that has
    written a row, as an application in the middle of its work."""

    def __init__(self, scene, dbname: str | None = None, name: str = "app") -> None:
        role, password = scene.role(name)
        dbname = dbname or scene.dbname
        with scene.connect() as conn:
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident(dbname), ident(role)))
        with psycopg.connect(scene.server.conninfo(dbname), autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT INSERT ON precious TO {}").format(ident(role)))
        self.role = role
        self.conn = psycopg.connect(scene.dsn(role, password, dbname=dbname) + "?application_name=billing")
        self.conn.execute("INSERT INTO precious VALUES ('written by the app')")  # its transaction is open
        self.pid = self.conn.info.backend_pid

    def commits(self) -> bool:
        """Whether its transaction is still there and commits."""
        try:
            self.conn.commit()
            return True
        except psycopg.OperationalError:
            return False

    def close(self) -> None:
        self.conn.close()


def test_other_clients_sessions_refuse_a_reset_naming_each_and_nothing_is_ended(scene, migration_files):
    scene.create()
    app = App(scene)
    try:
        message = refusal(scene, migration_files)
        assert message.startswith(f"other clients have sessions on '{scene.dbname}' on user={scene.admin} ")
        assert f"pid {app.pid} (role '{app.role}', application 'billing', connected since " in message
        assert ", in a transaction since " in message
        assert "nothing was changed" in message and "pass --end-sessions to let the reset end them" in message
        assert app.commits()
    finally:
        app.close()
    assert scene.precious() == ["still here", "written by the app"]
    assert scene.databases() == {scene.dbname}


def test_end_sessions_replaces_the_database_and_ends_the_sessions_on_it(scene, workspace):
    """End to end: the flag through invoke."""
    scene.create()
    other, password = scene.role("browser")
    with scene.connect() as conn:
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident(scene.dbname), ident(other)))
    browsing = psycopg.connect(scene.dsn(other, password), autocommit=True)  # someone's IDE
    try:
        result = workspace("db.reset", "--dsn", scene.dsn(), "--end-sessions")
        assert result.returncode == 0, result.stderr
        clean(result, scene.password)
        with pytest.raises(psycopg.OperationalError):
            browsing.execute("SELECT 1")
    finally:
        browsing.close()
    assert scene.databases() == {scene.dbname}
    assert scene.marked()
    assert scene.snapshot() == scene.clean_apply(workspace.files())
    with psycopg.connect(scene.server.conninfo(scene.dbname)) as conn:
        assert conn.execute("SELECT to_regclass('precious')").fetchone()[0] is None  # rebuilt


def test_sessions_the_role_may_not_end_are_named_and_none_is_ended(scene, migration_files):
    """--end-sessions, and a session the role may not end beside one it may: the refusal comes
    before either is ended."""
    owner, password = scene.role("owner", "CREATEDB")
    scene.create(owner=owner)
    with scene.connect() as conn:
        conn.execute(sql.SQL("GRANT {} TO {}").format(ident(owner), ident(scene.admin)))
    mine = psycopg.connect(scene.dsn(owner, password), autocommit=True)  # the owner's own session
    try:
        with psycopg.connect(scene.server.conninfo(scene.dbname)) as superuser_session:
            pid, superuser = superuser_session.info.backend_pid, superuser_session.info.user
            message = refusal(scene, migration_files, role=owner, password=password, end_sessions=True)
            assert message.startswith(
                f"database '{scene.dbname}' on user={owner} password=*** dbname={scene.dbname} "
                f"host={scene.host} port={scene.port} has sessions this role may not end "
                f"(pid {pid} (role '{superuser}'"
            )
            assert "nothing was changed" in message and "next step: close them" in message
        assert mine.execute("SELECT 1").fetchone() == (1,)  # not ended either
    finally:
        mine.close()
    assert scene.precious() == ["still here"]
    assert scene.databases() == {scene.dbname}


REFUSALS = {
    "an unmarked database in the way": lambda scene: scene.create(
        side_name(scene.dbname, NEW_SUFFIX), marked=False
    ),
    "a session it may not end": lambda scene: scene.keep(
        psycopg.connect(scene.server.conninfo(scene.dbname))
    ),
    "a subscription": lambda scene: scene.subscribe(),
    "a setting it may not carry over": lambda scene: scene.alter(
        "ALTER ROLE {admin} IN DATABASE {db} SET work_mem = '8MB'"
    ),
}


@pytest.mark.parametrize("cause", sorted(REFUSALS))
def test_a_refused_reset_has_ended_no_session_and_changed_nothing(scene, migration_files, cause, monkeypatch):
    """The issue's case, at its class: whatever refuses the reset, it is found before any
    session is ended, before anything is built (here with --end-sessions, as a non-superuser
    owner)."""
    owner, password = scene.role("owner", "CREATEDB")
    scene.create(owner=owner)
    app = App(scene)
    with scene.connect() as conn:
        conn.execute(sql.SQL("GRANT {} TO {}").format(ident(app.role), ident(owner)))  # it may end the app's

    def built(self, *args, **kwargs):
        pytest.fail("the reset built the new database before deciding it would be refused")

    try:
        REFUSALS[cause](scene)
        with monkeypatch.context() as patched:
            patched.setattr(DsnBackend, "apply", built)
            refusal(scene, migration_files, role=owner, password=password, end_sessions=True)
        assert app.commits(), "the app's transaction was rolled back by a reset that was then refused"
    finally:
        app.close()
        scene.release()
    assert scene.precious() == ["still here", "written by the app"]
    assert scene.dbname in scene.databases()
    assert side_name(scene.dbname, OLD_SUFFIX) not in scene.databases()


def test_a_role_without_createdb_is_refused_before_anything_is_dropped(scene, workspace):
    role, password = scene.role("nocreate", "NOCREATEDB")
    scene.create(owner=role, marked=False)
    result = workspace.in_process("db.reset", "--dsn", scene.dsn(role, password), "--force")
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
        result = workspace.in_process("db.reset", "--dsn", scene.dsn(role, password), *flags)
        assert result.returncode == 1, result.stdout
        message = clean(result, password)
        assert f"database '{scene.dbname}' on user={role} password=*** " in message
        assert f"belongs to role '{keeper}'; role '{role}' may not drop or rename it" in message
        assert f"next step: connect as '{keeper}' (or a superuser)" in message
        assert scene.precious() == ["still here"]
        assert scene.databases() == {scene.dbname}


def test_a_database_not_created_by_this_tool_needs_force(scene, workspace):
    scene.create(marked=False)
    refused = workspace.in_process("db.reset", "--dsn", scene.dsn())
    assert refused.returncode == 1
    assert clean(refused).startswith(f"database '{scene.dbname}' on ")
    assert "was not created by this tool" in refused.stderr and "pass --force" in refused.stderr
    assert scene.precious() == ["still here"]
    forced = workspace.in_process("db.reset", "--dsn", scene.dsn(), "--force")
    assert forced.returncode == 0, forced.stderr
    assert scene.databases() == {scene.dbname} and scene.marked()


@pytest.mark.parametrize("dbname", ["postgres", "template1", "template0"])
def test_the_servers_own_databases_are_refused(scene, workspace, dbname):
    result = workspace.in_process("db.reset", "--dsn", scene.dsn(dbname=dbname), "--force")
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
    result = workspace.in_process(task, "--dsn", dsn)
    assert result.returncode == 1, result.stdout + result.stderr
    named = "names no database" if target == "no dbname" else f"names '{target}'"
    database = "postgres" if target == "no dbname" else target
    assert f"refusing to apply the migrations to the '{database}' database: the DSN {named}" in clean(
        result, scene.password
    )
    with scene.connect() as conn:
        assert owned_elsewhere(conn, [scene.admin], scene.dbname) == []


# -- what belongs to the database, not to the schema --------------------------------------------

# The database's own properties as the catalog shows them, read independently of the code under
# test: owner, encoding and locale, limits, tablespace, the ACL item by item, every setting per role
# (ALTER DATABASE … SET and ALTER ROLE … IN DATABASE … SET), the comment without the mark.
PROPERTIES = """
SELECT pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding,
       d.datcollate, d.datctype, d.datlocprovider, d.daticulocale, d.datconnlimit, d.datallowconn,
       t.spcname AS tablespace,
       (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(d.datacl) a) AS acl,
       (SELECT array_agg(coalesce(r.rolname, '*') || ': ' || c ORDER BY 1)
        FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) c
        WHERE s.setdatabase = d.oid) AS settings,
       split_part(shobj_description(d.oid, 'pg_database'), E'\nleaddb database (oid ', 1) AS comment
FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %s
"""


def properties(scene, dbname: str | None = None) -> dict:
    with scene.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(PROPERTIES, (dbname or scene.dbname,)).fetchone()


def give_properties(
    scene,
    *,
    encoding="LATIN1",
    limit=7,
    search_path=("my schema", '"quoted"', "$user", "public"),
    grants=True,
    locale: tuple[str, str] | None = None,
) -> dict[str, str]:
    """The scene's database made by hand with properties of its own; returns the roles made."""
    owner, _ = scene.role("owner")
    reader, _ = scene.role("reader")
    granter, _ = scene.role("granter")
    db = ident(scene.dbname)
    locale_sql = f"LOCALE_PROVIDER icu ICU_LOCALE {sql.Literal(locale[1]).as_string(None)} " if locale else ""
    with scene.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C' "
                + locale_sql
                + "CONNECTION LIMIT {}"
            ).format(db, ident(owner), sql.Literal(encoding), sql.Literal(limit))
        )
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal("billing's database\nline 2"))
        )
        if grants:
            conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db))
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, ident(reader)))
            conn.execute(
                sql.SQL("GRANT CREATE ON DATABASE {} TO {} WITH GRANT OPTION").format(db, ident(granter))
            )
            conn.execute(sql.SQL("SET ROLE {}").format(ident(granter)))
            conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(db, ident(reader)))
            conn.execute("RESET ROLE")
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET search_path TO {}").format(
                db, sql.SQL(", ").join(sql.Literal(item) for item in search_path)
            )
        )
        conn.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '8MB'").format(db))
        conn.execute(sql.SQL("ALTER DATABASE {} SET \"leaddb_test.flag\" = 'x y, z'").format(db))
        conn.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET statement_timeout = '5s'").format(ident(reader), db)
        )
        conn.execute(
            sql.SQL('ALTER ROLE {} IN DATABASE {} SET search_path = a, "B c"').format(ident(scene.admin), db)
        )
    with psycopg.connect(scene.server.conninfo(scene.dbname), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE public.precious (note text); INSERT INTO public.precious VALUES ('still here')"
        )
    return {"owner": owner, "reader": reader, "granter": granter}


def test_what_belongs_to_the_database_is_carried_over_by_a_forced_reset(scene, migration_files):
    """The issue's list: owner, LATIN1 (not UTF8 again), connection limit, REVOKE CONNECT FROM PUBLIC
    and grants (one by a role with the grant option), ALTER DATABASE … SET (a list setting with
    quoted names, a custom one), ALTER ROLE … IN DATABASE … SET, the comment."""
    give_properties(scene)
    before = properties(scene)
    assert before["encoding"] == "LATIN1" and before["datconnlimit"] == 7
    reset(scene, migration_files, force=True)
    assert properties(scene) == before
    assert scene.marked()  # the comment is the user's, with the mark as its last line
    assert scene.comment().startswith("billing's database\nline 2\nleaddb database (oid ")
    assert scene.snapshot() == scene.clean_apply(migration_files)
    reset(scene, migration_files)  # marked now: no --force needed; and carried over again
    assert properties(scene) == before


def test_a_rebuilt_database_keeps_icu_and_refuses_no_connections_setting(scene, migration_files):
    with scene.connect() as conn:
        icu = conn.execute("SELECT count(*) FROM pg_collation WHERE collprovider = 'i'").fetchone()[0]
    if not icu:
        pytest.skip("the server is built without ICU")
    give_properties(scene, encoding="UTF8", grants=False, locale=("icu", "de-DE"))
    with scene.connect() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(ident(scene.dbname)))
    before = properties(scene)
    assert before["datlocprovider"] == "i" and before["datallowconn"] is False
    reset(scene, migration_files, force=True)
    assert properties(scene) == before
    with scene.connect() as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(ident(scene.dbname)))
    assert scene.snapshot() == scene.clean_apply(migration_files)


ONE_TABLE = migrations.Migration(
    Path("api/db/migrations/0001_one_table.sql"),
    1,
    "BEGIN;\nCREATE TABLE IF NOT EXISTS public.one_table (id bigint PRIMARY KEY);\nCOMMIT;\n",
)

_IDENTIFIER = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=("Cs",)),
    min_size=1,
    max_size=12,
)


# no shrinking: each example is a reset (about a second); a failure shows its example as found
@settings(
    max_examples=8,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    search_path=st.lists(_IDENTIFIER, min_size=1, max_size=4),
    limit=st.integers(-1, 500),
    encoding=st.sampled_from(["UTF8", "LATIN1", "SQL_ASCII", "EUC_JP"]),
    grants=st.booleans(),
)
def test_any_settings_acl_and_limit_come_back_as_they_were(scene, search_path, limit, encoding, grants):
    """Any list setting (names with quotes, commas, spaces, capitals, any script), limit,
    encoding and ACL: the rebuilt database's properties read back equal. What is carried over
    belongs to the database, not to its schema: each example rebuilds it with one small
    migration. The whole schema is rebuilt in the tests above under fixed settings (a search_path
    with public, LATIN1 and UTF8); under a search_path without public, by test_inputs (the
    runner pins its own); under SQL_ASCII, by test_hostile."""
    example = Scene(scene.server)  # one of its own per example
    try:
        give_properties(
            example, encoding=encoding, limit=limit, search_path=tuple(search_path), grants=grants
        )
        before = properties(example)
        reset(example, [ONE_TABLE], force=True)
        assert properties(example) == before
    finally:
        example.remove()


def test_what_cannot_be_carried_over_refuses_before_anything_is_created(scene, migration_files):
    """A non-superuser owner cannot give the rebuilt database a superuser-only setting a superuser
    set on it, nor a setting of another role: named, and nothing created, dropped or ended."""
    owner, password = scene.role("owner", "CREATEDB")
    scene.create(owner=owner)
    scene.alter("ALTER DATABASE {db} SET log_min_duration_statement = '1s'")
    scene.alter("ALTER ROLE {admin} IN DATABASE {db} SET work_mem = '8MB'")
    message = refusal(scene, migration_files, role=owner, password=password)
    assert message.startswith(f"a reset of '{scene.dbname}' on user={owner} ") or message.startswith(
        f"database '{scene.dbname}' on user={owner} "
    )
    assert "has properties of its own that role" in message and "so they would be lost" in message
    assert "its setting 'log_min_duration_statement=1s': only a superuser" in message
    assert f"the settings of role '{scene.admin}' in it (work_mem=8MB;" in message
    assert scene.databases() == {scene.dbname} and scene.precious() == ["still here"]


def test_what_the_rebuilt_database_lacks_stops_the_swap(scene, migration_files, monkeypatch):
    """The comparison after the build is the net under the carrying: whatever was not carried
    (here: the settings, dropped on purpose) stops the reset before the swap."""
    give_properties(scene)
    before = properties(scene)
    real_carry = database.carry

    def carry_without_settings(conn, name, old):
        return real_carry(conn, name, dataclasses.replace(old, settings={}))

    monkeypatch.setattr(database, "carry", carry_without_settings)
    message = refusal(scene, migration_files, force=True)
    assert "could not all be carried over to the rebuilt one, so the reset stopped before the swap" in message
    assert "setting search_path (ALTER DATABASE … SET)" in message
    assert properties(scene) == before and scene.precious() == ["still here"]
    assert scene.databases() == {scene.dbname}


def test_a_rebuilt_database_stays_in_its_tablespace(scene, migration_files):
    """The tablespace is an in-place one (``allow_in_place_tablespaces``, PostgreSQL 15: a
    directory under the server's own pg_tblspc, made and removed by the server), so the test
    needs no directory on the server's host and runs on every test server alike."""
    space = f"dsn_{scene.tag}_space"
    with scene.connect() as conn:
        conn.execute("SET allow_in_place_tablespaces = on")
        conn.execute(sql.SQL("CREATE TABLESPACE {} LOCATION ''").format(ident(space)))
    try:
        with scene.connect() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TABLESPACE {}").format(ident(scene.dbname), ident(space))
            )
        reset(scene, migration_files, force=True)
        assert properties(scene)["tablespace"] == space
    finally:
        scene.remove()
        with scene.connect() as conn:
            conn.execute(sql.SQL("DROP TABLESPACE {}").format(ident(space)))


# -- names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tail", ["x" * 64, "é" * 32, "é" * 31 + "x", "ab" * 31 + "é"])
def test_a_dsn_name_the_server_would_cut_is_refused_up_front(scene, tail):
    """Over 63 bytes the server cuts the name (at a byte in the connection, at a character in
    CREATE DATABASE): the first reset said "ready", every later one "already exists", a
    multibyte one was unreachable. The database the cut name reaches is someone else's."""
    name = (scene.dbname + "_" + tail).encode()[:64].decode(errors="ignore")
    name += "x" * (64 - len(name.encode()))  # 64 bytes: one over
    cut = name.encode()[:63].decode(errors="ignore")
    scene.create(cut, marked=False)  # what the server would reach instead
    with pytest.raises(BackendError) as refused:
        DsnBackend(Path.cwd(), scene.dsn(dbname=quote(name)))
    message = str(refused.value)
    assert message.startswith(f"the DSN names database {name!r}: the name is {len(name.encode())} bytes")
    assert "PostgreSQL keeps at most 63 (NAMEDATALEN - 1)" in message and "at most 63 bytes" in message
    assert scene.precious(cut) == ["still here"]


def test_what_an_interrupted_reset_left_is_dropped_by_the_next(scene, migration_files, capsys):
    """A crash after the swap's commit leaves the old database as a marked tombstone; one during
    the build, the half-built database (marked as soon as it exists). Every database the reset
    drops is named before the first is dropped."""
    scene.create()
    new, old = side_name(scene.dbname, NEW_SUFFIX), side_name(scene.dbname, OLD_SUFFIX)
    scene.create(old)
    scene.create(new)
    reset(scene, migration_files)
    said = capsys.readouterr().out.splitlines()
    assert said[:3] == [
        f"dsn: this reset drops '{new}' (left behind by an interrupted reset), '{old}' (left behind by an "
        f"interrupted reset), '{scene.dbname}' (replaced by the rebuilt one once it is complete)",
        f"dsn: dropping '{new}', left behind by an interrupted reset",
        f"dsn: dropping '{old}', left behind by an interrupted reset",
    ]
    assert scene.databases() == {scene.dbname}
    assert scene.snapshot().get("table", "leads")


@pytest.mark.parametrize("side", [NEW_SUFFIX, OLD_SUFFIX])
@pytest.mark.parametrize("force", [False, True])
def test_an_unmarked_database_in_the_way_is_never_dropped_even_with_force(
    scene, migration_files, side, force
):
    """The issue's case: --force of the target dropped someone's `<db>__leaddb_new` as "left
    behind". --force names the target only; a side name without the mark is someone else's."""
    scene.create(marked=False)
    in_the_way = side_name(scene.dbname, side)
    scene.create(in_the_way, marked=False)
    message = refusal(scene, migration_files, force=force)
    assert f"database '{in_the_way}' on " in message
    assert (
        f"is in the way: a reset of '{scene.dbname}' builds under that name, and it was not created "
        in message
    )
    assert "--force does not drop it" in message and f'DROP DATABASE "{in_the_way}"' in message
    if not force:  # the target too, in the same refusal, and every database it would drop
        assert message.startswith(f"a reset of '{scene.dbname}' on ")
        assert f"database '{scene.dbname}' on " in message and "was not created by this tool" in message
    assert (
        f"(a reset would drop '{in_the_way}' (left behind by an interrupted reset), '{scene.dbname}' "
        in message
    )
    assert scene.precious(in_the_way) == ["still here"] and scene.precious() == ["still here"]
    assert scene.databases() == {scene.dbname, in_the_way}


@pytest.mark.parametrize("comment", ["someone's comment", "another database's mark"])
def test_a_target_whose_comment_is_not_its_own_mark_needs_force(scene, migration_files, comment):
    scene.create(marked=False)
    other = side_name(scene.dbname, OLD_SUFFIX)
    scene.create(other)
    text = scene.comment(other) if comment == "another database's mark" else "the billing team's"
    scene.alter(f"COMMENT ON DATABASE {{db}} IS {sql.Literal(text).as_string(None)}")
    with scene.connect() as conn:
        janitor.drop_database(conn, other)
    message = refusal(scene, migration_files)
    assert message.startswith(f"database '{scene.dbname}' on ") and "was not created by this tool" in message
    assert scene.precious() == ["still here"]


@pytest.mark.parametrize(
    "forgery", ["another database's mark", "an earlier version's mark", "a copy of a marked database"]
)
def test_a_mark_not_made_for_the_database_is_no_mark(scene, migration_files, forgery):
    """The mark is tied to the database's own oid: copied from another database, by an earlier
    version's plain text, or through CREATE DATABASE … TEMPLATE, it does not make a database ours."""
    scene.create()
    in_the_way = side_name(scene.dbname, NEW_SUFFIX)
    with scene.connect() as conn:
        if forgery == "a copy of a marked database":
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(ident(in_the_way), ident(scene.dbname))
            )
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(ident(in_the_way)))
            text = scene.comment() if forgery == "another database's mark" else database.LEGACY_MARK
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(ident(in_the_way), sql.Literal(text)))
    assert not scene.marked(in_the_way)
    message = refusal(scene, migration_files, force=True)
    assert f"database '{in_the_way}' on " in message and "is in the way" in message
    assert in_the_way in scene.databases()


def test_a_reset_killed_mid_build_leaves_the_old_database_and_releases_its_lock(scene, workspace):
    scene.create()
    gate = scene.gate()
    workspace.write("0008_gate.sql", gate.migration("probe_gate"))
    first = workspace.popen("db.reset", "--dsn", scene.dsn())
    gate.wait_entered(first)
    first.kill()  # SIGKILL; TerminateProcess on Windows: no clean-up runs
    first.communicate(timeout=WAIT)
    assert scene.precious() == ["still here"]
    assert scene.marked(side_name(scene.dbname, NEW_SUFFIX))
    deadline = time.monotonic() + WAIT
    while scene.lock_holders():  # the server ends the dead client's session, and its lock
        assert time.monotonic() < deadline, "the killed reset's lock was never released"
        time.sleep(0.05)
    printed.remove_printed(workspace.root, "0008_gate.sql")
    again = workspace.in_process("db.reset", "--dsn", scene.dsn())  # what the kill left is on the server
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
        print(backend._lock_session.info.backend_pid, flush=True)
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


def test_a_nested_lock_in_one_process_is_refused_and_released_after(scene):
    """Nothing nests task locks (verify takes and releases one per step): a second hold in the
    same process is refused like another process's, and the first is released after."""
    first, second = DsnBackend(Path.cwd(), scene.dsn()), DsnBackend(Path.cwd(), scene.dsn())
    with first.lock("db.reset"):
        (held,) = scene.lock_holders()
        with pytest.raises(BackendError, match=f"another db.reset of database .* is running \\(pid {held}"):
            with second.lock("db.bench"):
                pytest.fail("a nested lock was taken")
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
            result = workspace.in_process(task, "--dsn", dsn)
            assert result.returncode == 1, (task, result.stdout)
            message = clean(result, "s3cret-nowhere", "wrong-" + scene.password[:6])
            assert message.startswith(f"cannot connect to user={user} password=*** dbname="), message
            assert reason in message and f"host={host}" in message
            assert any(f"next step: {hint}" in message for hint in hints[reason]), message
    down = workspace.in_process("db.down", "--dsn", nowhere)  # down touches nothing, so it needs no server
    assert down.returncode == 0 and "is not ours to stop; nothing done" in down.stdout
    assert scene.databases() == set()


def test_without_connect_on_postgres_apply_runs_unlocked_and_reset_is_refused(scene, workspace):
    owner, password = scene.role("owner", "CREATEDB")
    scene.create(owner=owner)
    dsn = scene.dsn(owner, password)
    with scene.connect() as conn:
        conn.execute("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC")
    try:
        apply = workspace.in_process("db.apply", "--dsn", dsn)
        assert apply.returncode == 0, apply.stderr
        clean(apply, password)
        note = "note: db.apply runs without the task lock: the DSN's role cannot connect to the 'postgres'"
        assert note in apply.stdout
        reset = workspace.in_process("db.reset", "--dsn", dsn)
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
