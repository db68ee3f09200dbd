"""The diagram as a picture: Graphviz source (a table-shaped node per table and enum, an edge
per foreign key), rendered to SVG by ``dot`` when it is installed."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

from leaddb.erd import Model, short_type
from leaddb.errors import LeadDbError


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
                f'<TD ALIGN="LEFT">{html.escape(short_type(c.type))}</TD>'
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
            hint="report it with the dot source: `leaddb.erd.graphviz.dot(model)`",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(result.stdout)
    return path
