"""An entity-relationship diagram of the live schema: Mermaid text for ``docs/schema.md``
(GitHub renders it) and, through Graphviz's ``dot`` when it is installed, an SVG.

Both come from the catalog (tables, columns in column order with their type and
nullability, primary/unique/foreign keys with their columns, each foreign key's
``ON DELETE``, the enums with their labels in order). The output is sorted and carries
no timestamp, so a stale committed diagram is found by comparing text.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from leaddb.catalog import SCHEMA, connect, read_all
from leaddb.errors import LeadDbError

MARKDOWN_PATH = Path("docs/schema.md")
README_PATH = Path("README.md")
# the README embeds the diagram between these two lines (written by db.erd, checked by db.drift)
README_BEGIN = "<!-- erd:begin (written by `invoke db.erd`; do not edit) -->"
README_END = "<!-- erd:end -->"
# Mermaid's erDiagram lexer takes attribute types and names of these characters (older
# renderers, GitHub's included, take no comma or dot)
_MERMAID_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-\[\]\(\)]*$")
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


# -- Mermaid ------------------------------------------------------------------------------


def _short_type(type_: str) -> str:
    for pattern, replacement in _SHORT_TYPES:
        type_ = pattern.sub(replacement, type_)
    return type_


def _word(text: str) -> str:
    """``text`` as one Mermaid attribute word (a type, a column or label name)."""
    if _MERMAID_WORD.match(text):
        return text
    word = re.sub(r"[^A-Za-z0-9_\-\[\]\(\)]", "_", text.replace('"', ""))
    return word if re.match(r"^[A-Za-z_]", word) else f"_{word}"


def _entity(name: str) -> str:
    """A table or enum name as a Mermaid entity name; a column's type names its enum the same way."""
    word = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return word if re.match(r"^[A-Za-z_]", word) else f"_{word}"


def _comment(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def mermaid(model: Model) -> str:
    """The ``erDiagram`` text: tables with their columns, enums, foreign keys as edges."""
    lines = ["erDiagram"]
    for table in model.tables:
        if _entity(table.name) != table.name:
            lines.append(f"    %% {_entity(table.name)} is table {table.name}")
        lines.append(f"    {_entity(table.name)} {{")
        for column in table.columns:
            type_ = _short_type(column.type)
            note = ["NOT NULL" if column.not_null else "NULL"]
            if _word(type_) != type_:
                note.insert(0, f"type {type_}")
            if _word(column.name) != column.name:
                note.insert(0, f"column {column.name}")
            keys = f" {', '.join(column.keys)}" if column.keys else ""
            lines.append(f"        {_word(type_)} {_word(column.name)}{keys} {_comment(', '.join(note))}")
        lines.append("    }")
    for enum in model.enums:
        if _entity(enum.name) != enum.name:
            lines.append(f"    %% {_entity(enum.name)} is enum {enum.name}")
        lines.append(f"    {_entity(enum.name)} {{")
        for label in enum.labels:
            note = f" {_comment(f'label {label}')}" if _word(label) != label else ""
            lines.append(f"        enum {_word(label)}{note}")
        lines.append("    }")
    for fk in model.foreign_keys:
        parent = "|o" if fk.optional else "||"
        child = "o|" if fk.one_to_one else "o{"
        label = f"{', '.join(fk.columns)}: ON DELETE {fk.on_delete}"
        lines.append(f"    {_entity(fk.ref_table)} {parent}..{child} {_entity(fk.table)} : {_comment(label)}")
    return "\n".join(lines) + "\n"


def markdown(model: Model) -> str:
    """The committed ``docs/schema.md``: the diagram, then its foreign keys and enums as tables."""
    fk_rows = [
        f"| `{fk.table}` | {', '.join(fk.columns)} | `{fk.ref_table}` ({', '.join(fk.ref_columns)}) "
        f"| {fk.on_delete} | `{fk.name}` |"
        for fk in model.foreign_keys
    ]
    enum_rows = [f"| `{e.name}` | {', '.join(e.labels)} |" for e in model.enums]
    parts = [
        "# Schema",
        "",
        "<!-- Generated by `invoke db.erd` from the live catalog. Do not edit: run the task. -->",
        "",
        f"The `{SCHEMA}` schema as the migrations leave it: {len(model.tables)} tables, "
        f"{len(model.foreign_keys)} foreign keys, {len(model.enums)} enum types. Each column shows its "
        "type, its key markers (`PK` primary key, `FK` foreign key, `UK` unique) and `NOT NULL` or "
        "`NULL`; each foreign key is an edge from the referenced table to the referencing one, "
        "labelled with its columns and its `ON DELETE` action. Regenerate this file with "
        "`invoke db.erd`; `invoke db.drift` (and so `verify`) fails when it is stale.",
        "",
        "```mermaid",
        mermaid(model).rstrip("\n"),
        "```",
        "",
        "## Foreign keys",
        "",
        "| table | columns | references | on delete | constraint |",
        "|---|---|---|---|---|",
        *fk_rows,
        "",
        "## Enums",
        "",
        "| enum | labels, in order |",
        "|---|---|",
        *enum_rows,
    ]
    return "\n".join(parts) + "\n"


# -- Graphviz -----------------------------------------------------------------------------


def _port(column: str) -> str:
    return "c_" + re.sub(r"[^A-Za-z0-9_]", "_", column)


def dot(model: Model) -> str:
    """Graphviz source: one table-shaped node per table and enum, an edge per foreign key from
    the referencing column to the referenced one (crow's foot at the referencing end)."""
    header = "#dbe7f3"
    out = [
        "digraph schema {",
        '  graph [rankdir=LR, fontname="Helvetica", nodesep=0.35, ranksep=1.1, pad=0.3];',
        '  node [shape=plain, fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9, color="#4a5a6a", fontcolor="#2a3a4a", dir=both];',
    ]
    for table in model.tables:
        rows = [
            f'<TR><TD COLSPAN="4" BGCOLOR="{header}"><B>{html.escape(table.name)}</B></TD></TR>',
        ]
        for c in table.columns:
            rows.append(
                f'<TR><TD ALIGN="LEFT" PORT="{_port(c.name)}_in">{html.escape(c.name)}</TD>'
                f'<TD ALIGN="LEFT">{html.escape(_short_type(c.type))}</TD>'
                f'<TD ALIGN="LEFT">{" ".join(c.keys)}</TD>'
                f'<TD ALIGN="LEFT" PORT="{_port(c.name)}_out">{"NOT NULL" if c.not_null else ""}</TD></TR>'
            )
        out.append(_html_node(table.name, rows))
    for enum in model.enums:
        rows = [f'<TR><TD BGCOLOR="#efe6d2"><B>{html.escape(enum.name)}</B> <I>enum</I></TD></TR>']
        rows += [f'<TR><TD ALIGN="LEFT">{html.escape(label)}</TD></TR>' for label in enum.labels]
        out.append(_html_node(enum.name, rows))
    for fk in model.foreign_keys:
        head = "teeodot" if fk.optional else "teetee"
        tail = "teeodot" if fk.one_to_one else "crowodot"
        label = html.escape(f"ON DELETE {fk.on_delete}")
        child = f'"{fk.table}":"{_port(fk.columns[0])}_out":e'
        parent = f'"{fk.ref_table}":"{_port(fk.ref_columns[0])}_in":w'
        out.append(
            f"  {child} -> {parent} "
            f'[arrowhead={head}, arrowtail={tail}, label=<{label}>, tooltip="{fk.name}"];'
        )
    out.append("}")
    return "\n".join(out) + "\n"


def _html_node(name: str, rows: list[str]) -> str:
    body = "".join(rows)
    return (
        f'  "{name}" [label=<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">'
        f"{body}</TABLE>>];"
    )


def dot_program() -> str | None:
    return shutil.which("dot")


def svg(model: Model, path: Path, *, program: str | None = None) -> Path:
    """Render the diagram to SVG with Graphviz's ``dot``."""
    program = program or dot_program()
    if program is None:
        raise LeadDbError(
            "Graphviz's `dot` is not on PATH: no SVG",
            hint="install Graphviz (Debian: apt-get install graphviz)",
        )
    result = subprocess.run(
        [program, "-Tsvg"], input=dot(model).encode("utf-8"), capture_output=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise LeadDbError(
            f"dot failed (exit {result.returncode}): {result.stderr.decode('utf-8', 'replace').strip()}",
            hint="report it with the dot source: `leaddb.erd.dot(model)`",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(result.stdout)
    return path


def embedded(model: Model) -> str:
    """The diagram as the README embeds it: the Mermaid block alone."""
    return "```mermaid\n" + mermaid(model) + "```\n"


def embed(readme: str, model: Model) -> str | None:
    """``readme`` with the text between its erd markers replaced by the diagram; None when it
    has no such pair (a README without the block is left alone)."""
    begin = readme.find(README_BEGIN + "\n")
    end = readme.find("\n" + README_END, begin)
    if begin < 0 or end < 0:
        return None
    start = begin + len(README_BEGIN) + 1
    return readme[:start] + embedded(model) + readme[end + 1 :]


def write_markdown(model: Model, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(model), encoding="utf-8", newline="\n")
    return path


def stale_lines(committed: str, current: str) -> str:
    """Where the committed text first differs from the current one, for the stale message."""
    old, new = committed.splitlines(), current.splitlines()
    for number, (a, b) in enumerate(zip(old, new, strict=False), 1):
        if a != b:
            return f"first difference at line {number}:\n      committed: {a}\n      live:      {b}"
    number = min(len(old), len(new)) + 1
    longer, side = (new, "live") if len(new) > len(old) else (old, "committed")
    return f"first difference at line {number}: only the {side} text has\n      {longer[number - 1]}"
