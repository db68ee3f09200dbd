"""The database lifecycle on a running server, apart from the server's own: create
(optionally from a template), drop, and scratch databases that go away afterwards.
DDL is built with ``psycopg.sql.Identifier``; every function takes an autocommit
connection to a maintenance database (``CREATE DATABASE`` cannot run in a transaction)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from leaddb import masking
from leaddb.errors import BackendError


def maintenance(conninfo: str) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=True)


def create_database(conn: psycopg.Connection, name: str, *, template: str | None = None) -> None:
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    try:
        conn.execute(query)
    except psycopg.errors.ObjectInUse as exc:  # a template must have no session open on it
        source = template or "template1"
        raise BackendError(
            f"cannot create database {name!r} from {source!r}: {str(exc).strip()}",
            hint=f"close the sessions connected to {source!r} (psql, an IDE) and run the task again",
        ) from None


def drop_database(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def scratch_database(maintenance_conninfo: str, *, purpose: str) -> Iterator[str]:
    """An empty database (from template0) for ``purpose``; yields its name, drops it after."""
    name = f"leaddb_{purpose}_{secrets.token_hex(4)}"
    try:
        with maintenance(maintenance_conninfo) as conn:
            create_database(conn, name, template="template0")
    except psycopg.Error as exc:
        reason = masking.scrub(str(exc).strip(), maintenance_conninfo)
        raise BackendError(
            f"cannot create a scratch database for the {purpose} step: {reason}",
            hint="it is created and dropped on the same server: connect as a role with CREATEDB "
            "that can reach the 'postgres' database",
        ) from None
    try:
        yield name
    finally:
        with maintenance(maintenance_conninfo) as conn:
            drop_database(conn, name)
