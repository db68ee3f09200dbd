"""The database lifecycle on a running server, apart from the server's own: create
(optionally from a template), drop, and scratch databases that go away afterwards; the names
a database may have, and the marks that say a database is this tool's.
DDL is built with ``psycopg.sql.Identifier``; every function takes an autocommit
connection to a maintenance database (``CREATE DATABASE`` cannot run in a transaction).

**Marks.** A database this tool makes carries, as the last line of its comment,
``leaddb <kind> (oid <its own oid>): …``. The oid ties the mark to that one database: neither
``CREATE DATABASE … TEMPLATE`` nor a dump restored under another name copies it with the right
oid, so no database becomes "ours" by accident. Only a marked database is ever dropped
without the user naming it.

**Scratch databases** (the bench's, drift's expected schema, ``status --detail``, the test
suite's) are marked as they are made, and their maker holds a session-level advisory lock on
the name (``scratch_lock_key``) in the maintenance database from before it creates the
database until after it drops it. A run killed in between leaves a marked database whose lock
the server released with the run's session: the next run's :func:`sweep` drops exactly those,
never a database a live run still holds. A run killed between ``CREATE DATABASE`` and its
``COMMENT`` (two statements, a few milliseconds: the first cannot run in a transaction) leaves
an unmarked database, which nothing proves is ours: no sweep drops it.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from leaddb import masking, names, runner
from leaddb.console import say
from leaddb.errors import BackendError

# -- names: leaddb.names (no psycopg there), here too for the callers of the database lifecycle --

RESERVED, MAX_NAME_BYTES = names.RESERVED, names.MAX_NAME_BYTES
length_problem, name_problem, check_target = names.length_problem, names.problem, names.check_target


# -- marks -----------------------------------------------------------------------------------

_MARK = re.compile(r"^leaddb (?P<kind>[a-z ]+) \(oid (?P<oid>\d+)\): (?P<note>.*)$")


def mark_text(kind: str, oid: int, note: str) -> str:
    return f"leaddb {kind} (oid {oid}): {note}"


def split_comment(comment: str | None) -> tuple[str, tuple[str, int, str] | None]:
    """A database comment as (the text before the mark, the mark as (kind, oid, note) or None)."""
    if not comment:
        return "", None
    head, _, last = comment.rpartition("\n")
    found = _MARK.match(last)
    if found is None:
        return comment, None
    return head, (found["kind"], int(found["oid"]), found["note"])


def is_marked(comment: str | None, oid: int, kind: str) -> bool:
    """Whether the comment carries this tool's mark of ``kind`` made for database ``oid``."""
    mark = split_comment(comment)[1]
    return mark is not None and mark[0] == kind and mark[1] == oid


def database_oid(conn: psycopg.Connection, name: str) -> int | None:
    row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return None if row is None else int(row[0])


def mark(conn: psycopg.Connection, name: str, kind: str, note: str, *, keep: str = "") -> str:
    """Set the comment of ``name`` to ``keep`` (someone's comment, carried over) plus the mark."""
    oid = database_oid(conn, name)
    text = mark_text(kind, oid, note)
    if keep:
        text = f"{keep}\n{text}"
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(text)))
    return text


# -- create and drop -------------------------------------------------------------------------


def maintenance(conninfo: str) -> psycopg.Connection:
    return runner.connect(conninfo)


# CREATE DATABASE's ways of copying the template (PostgreSQL 15): block by block through the WAL
# (the default), or file by file between two checkpoints, which is cheaper for a small template
# but makes every session of the server wait on those checkpoints: for a server of our own only
STRATEGIES = ("WAL_LOG", "FILE_COPY")


def create_database(
    conn: psycopg.Connection, name: str, *, template: str | None = None, strategy: str | None = None
) -> None:
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    if strategy:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown CREATE DATABASE strategy {strategy!r}")
        query += sql.SQL(" STRATEGY {}").format(sql.SQL(strategy))
    try:
        conn.execute(query)
    except psycopg.errors.ObjectInUse as exc:  # a template must have no session open on it
        source = template or "template1"
        raise BackendError(
            f"cannot create database {name!r} from {source!r}: {str(exc).strip()}",
            hint=f"close the sessions connected to {source!r} (psql, an IDE) and run the task again",
        ) from None


def drop_database(conn: psycopg.Connection, name: str) -> None:
    """Drop ``name``, ending its sessions: only for a database whose sessions are the tool's own."""
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# -- scratch databases -----------------------------------------------------------------------

SCRATCH = "scratch database"
SCRATCH_PREFIX = "leaddb_"


def scratch_lock_key(name: str) -> int:
    """The advisory lock a scratch database's maker holds while it lives (in the maintenance
    database): the first 8 bytes of SHA-256("leaddb-scratch:" + name), a signed bigint."""
    digest = hashlib.sha256(f"leaddb-scratch:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_swept: set[tuple] = set()  # the servers (and roles) this process has swept


def sweep(conn: psycopg.Connection) -> list[str]:
    """Drop the scratch databases of runs that are gone: marked as scratch for their own oid,
    dropable by this role, their maker's lock free (so its session is over), and no one else's
    session on them. Returns what was dropped, each named in one line."""
    dropped = []
    rows = conn.execute(
        "SELECT d.datname, d.oid, shobj_description(d.oid, 'pg_database') FROM pg_database d "
        "WHERE d.datname LIKE %s AND NOT d.datistemplate AND pg_has_role(d.datdba, 'USAGE')",
        (SCRATCH_PREFIX.replace("_", "\\_") + "%",),
    ).fetchall()
    for name, oid, comment in rows:
        if not is_marked(comment, int(oid), SCRATCH):
            continue
        key = scratch_lock_key(name)
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
            continue  # its run is alive
        try:
            # only the dead run used it: a session still there is that run's own (a statement the
            # server has not yet noticed the client is gone for), ended with the database; anyone
            # else's keeps it for a later sweep. An autovacuum worker visiting the new database
            # does not count (the server's own; DROP DATABASE ends it itself); a session this
            # role may not inspect (backend_type NULL: another role's) does
            (others,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                "AND backend_type IS DISTINCT FROM 'autovacuum worker' "
                "AND coalesce(application_name, '') NOT LIKE %s",
                (name, runner.APPLICATION_PREFIX.replace("_", "\\_") + "%"),
            ).fetchone()
            if others:
                continue
            try:
                drop_database(conn, name)
            except psycopg.Error:
                continue  # someone connected meanwhile, or a session it may not end: the next sweep
            note = split_comment(comment)[1][2]
            dropped.append(name)
            say(f"dropped {name!r}, a scratch database left behind by a run that is gone ({note})")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    return dropped


def sweep_once(conn: psycopg.Connection) -> None:
    """``sweep``, once per process and server (and role); quietly: housekeeping never stops a run."""
    server = (conn.info.host, conn.info.port, conn.info.user)
    if server in _swept:
        return
    _swept.add(server)
    try:
        sweep(conn)
    except psycopg.Error:
        pass  # a sweep is housekeeping: the run goes on; the next one tries again


def create_scratch(conn: psycopg.Connection, purpose: str, *, template: str | None = None) -> str:
    """Lock, create (from template0, or ``template``) and mark a scratch database for
    ``purpose``; its name. ``conn``'s session holds the lock until :func:`drop_scratch`, or until
    it ends: it must last as long as the database (module docstring)."""
    name = f"{SCRATCH_PREFIX}{purpose}_{secrets.token_hex(4)}"
    conn.execute("SELECT pg_advisory_lock(%s)", (scratch_lock_key(name),))
    create_database(conn, name, template=template or "template0")
    try:
        note = f"{purpose}, made by pid {os.getpid()} on {socket.gethostname()}; dropped when it ends"
        mark(conn, name, SCRATCH, note)
    except BaseException:
        drop_scratch(conn, name)
        raise
    return name


def drop_scratch(conn: psycopg.Connection, name: str) -> None:
    """Drop a scratch database of this session's (its sessions are the run's own) and let go of
    its lock."""
    drop_database(conn, name)
    conn.execute("SELECT pg_advisory_unlock(%s)", (scratch_lock_key(name),))


@contextmanager
def scratch_database(
    maintenance_conninfo: str, *, purpose: str, template: str | None = None
) -> Iterator[str]:
    """An empty database (from template0, or ``template``) for ``purpose``, marked and locked
    while it lives (module docstring); yields its name, drops it after. The first in a process
    sweeps what killed runs left."""
    try:
        conn = maintenance(maintenance_conninfo)
    except psycopg.Error as exc:
        raise _scratch_refused(purpose, exc, maintenance_conninfo) from None
    with conn:
        try:
            sweep_once(conn)
            name = create_scratch(conn, purpose, template=template)
        except psycopg.Error as exc:
            raise _scratch_refused(purpose, exc, maintenance_conninfo) from None
        try:
            yield name
        finally:
            drop_scratch(conn, name)


def _scratch_refused(purpose: str, exc: psycopg.Error, conninfo: str) -> BackendError:
    reason = masking.scrub(str(exc).strip(), conninfo)
    return BackendError(
        f"cannot create a scratch database for the {purpose} step: {reason}",
        hint="it is created and dropped on the same server: connect as a role with CREATEDB "
        "that can reach the 'postgres' database",
    )
