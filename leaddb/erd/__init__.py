"""An entity-relationship diagram of the live schema: its model, read from the catalog.

The pictures are drawn from the model by the rooms of this package, one job each:
``leaddb.erd.mermaid`` (the Mermaid text of the committed ``docs/schema.md``, which GitHub
renders), ``leaddb.erd.graphviz`` (an SVG through Graphviz's ``dot``, when it is installed) and
``leaddb.erd.readme`` (the diagram embedded in ``README.md``: written by db.erd, checked by
db.drift).

The model comes from the catalog (tables, columns in column order with their type and
nullability, primary/unique/foreign keys with their columns, each foreign key's
``ON DELETE``, the enums with their labels in order). The output is sorted and carries
no timestamp, so a stale committed diagram is found by comparing text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from leaddb.catalog import SCHEMA, connect, read_all

_SHORT_TYPES = [
    (re.compile(r"^timestamp\((\d+)\) with time zone"), r"timestamptz(\1)"),
    (re.compile(r"^timestamp with time zone"), "timestamptz"),
    (re.compile(r"^timestamp\((\d+)\) without time zone"), r"timestamp(\1)"),
    (re.compile(r"^timestamp without time zone"), "timestamp"),
    (re.compile(r"^time with time zone"), "timetz"),
    (re.compile(r"^time without time zone"), "time"),
    (re.compile(r"^character varying"), "varchar"),
    (re.compile(r"^character"), "char"),
    (re.compile(r"^double precision"), "float8"),
    (re.compile(r"^bit varying"), "varbit"),
]


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    keys: tuple[str, ...]  # "PK", "FK", "UK" in that order


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str
    optional: bool  # a referencing column may be NULL: the parent is zero or one
    one_to_one: bool  # the referencing columns are unique: at most one child per parent


@dataclass(frozen=True)
class Enum:
    name: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Model:
    tables: tuple[Table, ...]
    foreign_keys: tuple[ForeignKey, ...]
    enums: tuple[Enum, ...]


def read(conninfo: str, schema: str = SCHEMA) -> Model:
    """The diagram's content from the catalog (catalog queries only)."""
    from leaddb import waits  # a read that waits on a locked table is reported and bounded

    with waits.watched(conninfo, "reading the diagram from the catalog", connect=connect) as conn:
        return read_on(conn, schema)


def read_on(conn, schema: str = SCHEMA) -> Model:
    """:func:`read` on an open session (one round trip)."""
    tables, columns, keys, enums = read_all(conn, ["tables", "columns", "key_columns", "enums"], schema)
    return build([r["name"] for r in tables], columns, keys, enums)


def build(tables: list[str], columns: list[dict], keys: list[dict], enums: list[dict]) -> Model:
    marks: dict[tuple[str, str], set[str]] = {}
    unique_sets: dict[str, set[tuple[str, ...]]] = {}
    for k in keys:
        mark = {"p": "PK", "u": "UK", "f": "FK"}[k["kind"]]
        for column in k["columns"]:
            marks.setdefault((k["table_name"], column), set()).add(mark)
        if k["kind"] in ("p", "u"):
            unique_sets.setdefault(k["table_name"], set()).add(tuple(sorted(k["columns"])))
    nullable = {(c["table_name"], c["name"]) for c in columns if not c["not_null"]}
    by_table: dict[str, list[Column]] = {t: [] for t in tables}
    for c in sorted(columns, key=lambda c: (c["table_name"], c["position"])):
        if c["table_name"] in by_table:
            found = marks.get((c["table_name"], c["name"]), set())
            ordered = tuple(m for m in ("PK", "FK", "UK") if m in found)
            by_table[c["table_name"]].append(Column(c["name"], c["type"], c["not_null"], ordered))
    foreign = [
        ForeignKey(
            k["name"],
            k["table_name"],
            tuple(k["columns"]),
            k["ref_table"],
            tuple(k["ref_columns"]),
            k["on_delete"],
            any((k["table_name"], c) in nullable for c in k["columns"]),
            tuple(sorted(k["columns"])) in unique_sets.get(k["table_name"], set()),
        )
        for k in keys
        if k["kind"] == "f"
    ]
    return Model(
        tuple(Table(t, tuple(by_table[t])) for t in sorted(by_table)),
        tuple(sorted(foreign, key=lambda f: (f.table, f.name))),
        tuple(sorted((Enum(e["name"], tuple(e["labels"])) for e in enums), key=lambda e: e.name)),
    )


def stale_lines(committed: str, current: str) -> str:
    """Where the committed text first differs from the current one, for the stale message."""
    old, new = committed.splitlines(), current.splitlines()
    for number, (a, b) in enumerate(zip(old, new, strict=False), 1):
        if a != b:
            return f"first difference at line {number}:\n      committed: {a}\n      live:      {b}"
    number = min(len(old), len(new)) + 1
    longer, side = (new, "live") if len(new) > len(old) else (old, "committed")
    return f"first difference at line {number}: only the {side} text has\n      {longer[number - 1]}"


def short_type(type_: str) -> str:
    """A column's type as both pictures print it (``timestamptz`` for ``timestamp with time zone``)."""
    for pattern, replacement in _SHORT_TYPES:
        type_ = pattern.sub(replacement, type_)
    return type_
