"""Refuse destructive statements in the migrations, using PostgreSQL's parser.

Dropping, renaming, truncating or rewriting existing objects (``DROP``, ``RENAME``,
``ALTER … TYPE``, ``SET NOT NULL``, ``DROP COLUMN``/``CONSTRAINT``, ``TRUNCATE``,
``DELETE``/``UPDATE`` without a purpose here) is refused unless the spec allows that
object with a line ``Destructive change allowed: `name` `` .
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pglast
from pglast import ast
from pglast.enums import AlterTableType

from leaddb.migrations import Migration
from leaddb.spec import Spec

_ALLOWED = re.compile(r"Destructive change allowed:\s*`([^`]+)`")

_DESTRUCTIVE_SUBCOMMANDS = {
    AlterTableType.AT_DropColumn: "DROP COLUMN",
    AlterTableType.AT_AlterColumnType: "ALTER COLUMN … TYPE (rewrites the table)",
    AlterTableType.AT_SetNotNull: "SET NOT NULL on an existing column",
    AlterTableType.AT_DropConstraint: "DROP CONSTRAINT",
    AlterTableType.AT_DropNotNull: "DROP NOT NULL",
    AlterTableType.AT_ColumnDefault: None,  # SET/DROP DEFAULT is not destructive
}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    what: str
    target: str
    statement: str

    def describe(self) -> str:
        return f"{self.file}:{self.line}: {self.what} on {self.target}: {self.statement.splitlines()[0]}"


def allowed_objects(spec: Spec) -> set[str]:
    return set(_ALLOWED.findall(spec.text))


def _names(node) -> str:
    if isinstance(node, ast.RangeVar):
        return node.relname
    if isinstance(node, (list, tuple)):
        return ".".join(_names(n) for n in node)
    if isinstance(node, ast.String):
        return node.sval
    return str(getattr(node, "sval", node))


def _findings_of(stmt) -> list[tuple[str, str]]:
    if isinstance(stmt, ast.DropStmt):
        return [("DROP", ", ".join(_names(o) for o in stmt.objects or ()))]
    if isinstance(stmt, ast.RenameStmt):
        target = _names(stmt.relation) if stmt.relation else _names(stmt.object)
        return [("RENAME", target)]
    if isinstance(stmt, ast.TruncateStmt):
        return [("TRUNCATE", ", ".join(_names(r) for r in stmt.relations))]
    if isinstance(stmt, (ast.DeleteStmt, ast.UpdateStmt)):
        return [(type(stmt).__name__.removesuffix("Stmt").upper(), _names(stmt.relation))]
    if isinstance(stmt, ast.AlterTableStmt):
        found = []
        for cmd in stmt.cmds or ():
            what = _DESTRUCTIVE_SUBCOMMANDS.get(cmd.subtype)
            if what:
                column = f".{cmd.name}" if cmd.name else ""
                found.append((what, _names(stmt.relation) + column))
        return found
    if isinstance(stmt, ast.AlterEnumStmt) and stmt.oldVal:
        return [("RENAME VALUE", _names(stmt.typeName))]
    return []


def check(migrations: Sequence[Migration], spec: Spec) -> list[Finding]:
    allowed = allowed_objects(spec)
    findings = []
    for migration in migrations:
        for statement in migration.statements:
            for raw in pglast.parse_sql(statement.sql):
                for what, target in _findings_of(raw.stmt):
                    if target not in allowed and target.split(".")[-1] not in allowed:
                        findings.append(
                            Finding(migration.display(), statement.line, what, target, statement.sql)
                        )
    return findings
