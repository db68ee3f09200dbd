"""A snapshot of one database's schema, object by object.

Every object is keyed by a stable signature (kind plus schema-qualified name), and
its properties are PostgreSQL's own normalised spelling (``format_type``,
``pg_get_constraintdef``, ``pg_get_indexdef``), so two snapshots compare by key-set
arithmetic plus equality. The catalog queries live in ``queries/*.sql``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.rows import dict_row

from leaddb import runner
from leaddb.errors import LeadDbError

SCHEMA = "public"

# kind -> (query file, the columns that name the object: its signature within the kind);
# the properties never compared are _NOT_COMPARED's
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "extension": ("extensions", ("name",)),
    "enum": ("enums", ("name",)),
    "table": ("tables", ("name",)),
    "column": ("columns", ("table_name", "name")),
    "constraint": ("constraints", ("table_name", "name")),
    "index": ("indexes", ("name",)),
    "sequence": ("sequences", ("name",)),
    "function": ("functions", ("name", "arguments")),
    "trigger": ("triggers", ("table_name", "name")),
    "view": ("views", ("name",)),
}
# properties that identify rather than describe, or that legitimately differ between databases
_NOT_COMPARED = {"schema", "position"}


@cache
def query(name: str) -> str:
    return resources.files(__package__).joinpath("queries", f"{name}.sql").read_text(encoding="utf-8")


@cache
def fingerprint() -> str | None:
    """Changes whenever what a snapshot holds or how it spells it can change: the catalog
    queries and this module's code (it keys cached snapshots, ``leaddb.drift``); None when
    the code cannot be read, so nothing is cached."""
    digest = hashlib.sha256()
    try:
        digest.update(Path(__file__).read_bytes())
        for name, _ in sorted(KINDS.values()):
            digest.update(b"\0" + name.encode() + b"\0" + query(name).encode())
    except OSError:
        return None
    return digest.hexdigest()


@dataclass(frozen=True, order=True)
class CatalogObject:
    kind: str
    name: str  # the signature within its kind, e.g. "leads.phone" or "leads_email_check"
    properties: tuple[tuple[str, Any], ...] = field(compare=True)

    def get(self, key: str, default=None):
        return dict(self.properties).get(key, default)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


def _freeze(value):
    return tuple(value) if isinstance(value, list) else value


def _signature(kind: str, row: dict) -> str:
    names = KINDS[kind][1]
    if kind == "function":
        return f"{row['name']}({row['arguments']})"
    return ".".join(str(row[n]) for n in names)


@dataclass(frozen=True)
class Snapshot:
    objects: dict[tuple[str, str], CatalogObject]

    def of_kind(self, kind: str) -> list[CatalogObject]:
        return sorted(o for (k, _), o in self.objects.items() if k == kind)

    def get(self, kind: str, name: str) -> CatalogObject | None:
        return self.objects.get((kind, name))

    def to_data(self) -> dict:
        data = {kind: {o.name: dict(o.properties) for o in self.of_kind(kind)} for kind in KINDS}
        return {"schema": SCHEMA, "objects": data}

    def to_json(self) -> str:
        return json.dumps(self.to_data(), indent=2, sort_keys=True, default=str) + "\n"

    @classmethod
    def from_data(cls, data: dict) -> Snapshot:
        objects = {}
        for kind, named in data["objects"].items():
            for name, props in named.items():
                frozen = tuple(sorted((k, _freeze(v)) for k, v in props.items()))
                objects[(kind, name)] = CatalogObject(kind, name, frozen)
        return cls(objects)

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        return cls.from_data(json.loads(text))

    def save(self, path: Path) -> None:
        try:
            path.write_text(self.to_json(), encoding="utf-8", newline="\n")
        except OSError as exc:
            raise LeadDbError(f"{path}: cannot be written: {exc.strerror or exc}") from None

    @classmethod
    def load(cls, path: Path) -> Snapshot:
        return cls.from_json(path.read_text(encoding="utf-8"))


def read_all(conn: psycopg.Connection, names: list[str], schema: str = SCHEMA) -> list[list[dict]]:
    """The rows of each catalog query ``names``, in one round trip (pipelined where libpq can:
    14 or later), as dicts. The queries run in the session's order, each seeing the catalog as
    its own statement starts, as they do one by one."""
    params = {"schema": schema}
    if not psycopg.Pipeline.is_supported():
        with conn.cursor(row_factory=dict_row) as cur:
            return [cur.execute(query(name), params).fetchall() for name in names]
    with conn.pipeline():
        cursors = [conn.cursor(row_factory=dict_row).execute(query(name), params) for name in names]
    try:
        return [cur.fetchall() for cur in cursors]
    finally:
        for cur in cursors:
            cur.close()


def snapshot(conn: psycopg.Connection, schema: str = SCHEMA) -> Snapshot:
    objects: dict[tuple[str, str], CatalogObject] = {}
    results = read_all(conn, [query_name for query_name, _ in KINDS.values()], schema)
    for kind, rows in zip(KINDS, results, strict=True):
        for row in rows:
            props = tuple(sorted((k, _freeze(v)) for k, v in row.items() if k not in _NOT_COMPARED))
            name = _signature(kind, row)
            objects[(kind, name)] = CatalogObject(kind, name, props)
    return Snapshot(objects)


class _TextOfAnyBytes(Loader):
    """Text from a SQL_ASCII database, whose bytes are whatever its clients sent: UTF-8 where
    they are, escaped (``\\xe9``) where they are not, never ``b'…'`` nor an error."""

    def load(self, data) -> str:
        return bytes(data).decode("utf-8", "backslashreplace")


_TEXT_TYPES = ("text", "name", "varchar", "bpchar", '"char"')


def connect(conninfo: str, **kwargs) -> psycopg.Connection:
    """A reading session (the runner's pinned settings: schema ``public``, UTF-8). In a SQL_ASCII
    database the server converts nothing and checks nothing, so names another client wrote in
    another encoding would fail UTF-8's check: there the bytes are read as they are and decoded
    here, leniently."""
    conn = runner.connect(conninfo, **kwargs)
    if conn.info.parameter_status("server_encoding") == "SQL_ASCII":
        conn.execute("SET client_encoding = 'SQL_ASCII'")
        for name in _TEXT_TYPES:
            conn.adapters.register_loader(name, _TextOfAnyBytes)
    return conn


def snapshot_of(conninfo: str, schema: str = SCHEMA) -> Snapshot:
    """The snapshot, read on a session watched as applies are (``leaddb.waits``): reading a
    column's default waits for a table another session holds exclusively, visibly and bounded."""
    from leaddb import waits

    with waits.watched(conninfo, "reading the schema from the catalog", connect=connect) as conn:
        return snapshot(conn, schema)


def tables_elsewhere(conninfo: str, names: list[str], schema: str = SCHEMA) -> dict[str, list[str]]:
    """Per other schema, which of the tables ``names`` it holds: where a session with another
    ``search_path`` may have put them (only read when the schema lacks them, to say so)."""
    with connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND c.relname = ANY(%s) AND n.nspname <> %s "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%' "
            "ORDER BY 1, 2",
            (names, schema),
        ).fetchall()
    found: dict[str, list[str]] = {}
    for namespace, table in rows:
        found.setdefault(namespace, []).append(table)
    return found
