"""Refuse destructive statements in the migrations, using PostgreSQL's parser.

Dropping, renaming, truncating or rewriting existing objects (``DROP``, ``RENAME``,
``ALTER … TYPE``, ``SET NOT NULL``, ``DROP COLUMN``/``CONSTRAINT``, ``TRUNCATE``,
``DELETE``/``UPDATE`` without a purpose here) is refused unless the spec allows that
object with a line ``Destructive change allowed: `name` `` .

One parsed statement at a time: ``leaddb.rules`` walks the files and reports what this finds
under its rule "not destructive".
"""

from __future__ import annotations

import re

from pglast import ast
from pglast.enums import AlterTableType

from leaddb.spec import Spec

_ALLOWED = re.compile(r"Destructive change allowed:\s*`([^`]+)`")

DESTRUCTIVE_SUBCOMMANDS = {
    AlterTableType.AT_DropColumn: "DROP COLUMN",
    AlterTableType.AT_AlterColumnType: "ALTER COLUMN … TYPE (rewrites the table)",
    AlterTableType.AT_SetNotNull: "SET NOT NULL on an existing column",
    AlterTableType.AT_DropConstraint: "DROP CONSTRAINT",
    AlterTableType.AT_DropNotNull: "DROP NOT NULL",
    AlterTableType.AT_DropExpression: "DROP EXPRESSION (a generated column's values stay, frozen)",
    AlterTableType.AT_DropIdentity: "DROP IDENTITY",
    AlterTableType.AT_ColumnDefault: None,  # SET/DROP DEFAULT is not destructive
}

# the statements that drop, rename or empty what exists: this rule's to name (the spec may allow one)
DESTRUCTIVE_STATEMENTS = (
    ast.DropStmt,
    ast.RenameStmt,
    ast.TruncateStmt,
    ast.DropdbStmt,
    ast.DropTableSpaceStmt,
    ast.DropRoleStmt,
    ast.DropOwnedStmt,
    ast.DropSubscriptionStmt,
    ast.DropUserMappingStmt,
)


def allowed_objects(spec: Spec) -> set[str]:
    return set(_ALLOWED.findall(spec.text))


def _names(node) -> str:
    if isinstance(node, ast.RangeVar):
        return node.relname
    if isinstance(node, ast.TypeName):  # DROP TYPE, DROP DOMAIN
        return _names(node.names)
    if isinstance(node, ast.ObjectWithArgs):  # DROP FUNCTION, DROP AGGREGATE
        return _names(node.objname)
    if isinstance(node, (list, tuple)):
        return ".".join(_names(n) for n in node)
    return node.sval  # an ast.String: every other name the parser gives


def _findings_of(stmt) -> list[tuple[str, str]]:
    if isinstance(stmt, ast.DropStmt):
        return [("DROP", ", ".join(_names(o) for o in stmt.objects or ()))]
    if isinstance(stmt, ast.RenameStmt):
        # a relation (ALTER TABLE/INDEX/VIEW), an object (ALTER TYPE/FUNCTION), or a bare name (ALTER SCHEMA)
        target = _names(stmt.relation or stmt.object) if stmt.relation or stmt.object else stmt.subname
        return [("RENAME", target)]
    if isinstance(stmt, ast.TruncateStmt):
        return [("TRUNCATE", ", ".join(_names(r) for r in stmt.relations))]
    if isinstance(stmt, (ast.DeleteStmt, ast.UpdateStmt)):
        return [(type(stmt).__name__.removesuffix("Stmt").upper(), _names(stmt.relation))]
    if isinstance(stmt, ast.AlterTableStmt):
        found = []
        for cmd in stmt.cmds or ():
            what = DESTRUCTIVE_SUBCOMMANDS.get(cmd.subtype)
            if what:  # each names its column or constraint
                found.append((what, f"{_names(stmt.relation)}.{cmd.name}"))
            elif cmd.subtype == AlterTableType.AT_SetIdentity and _restarts(cmd.def_):
                found.append(
                    ("RESTART (hands out identity values again)", f"{_names(stmt.relation)}.{cmd.name}")
                )
        return found
    if isinstance(stmt, ast.AlterSeqStmt) and _restarts(stmt.options):
        return [("RESTART (hands out sequence values again)", _names(stmt.sequence))]
    dropped = {
        ast.DropdbStmt: ("DROP DATABASE", lambda s: s.dbname),
        ast.DropTableSpaceStmt: ("DROP TABLESPACE", lambda s: s.tablespacename),
        ast.DropRoleStmt: (
            "DROP ROLE",
            lambda s: ", ".join(r.rolename or r.roletype.name.removeprefix("ROLESPEC_") for r in s.roles),
        ),
        ast.DropOwnedStmt: (
            "DROP OWNED",
            lambda s: ", ".join(r.rolename or r.roletype.name.removeprefix("ROLESPEC_") for r in s.roles),
        ),
        ast.DropSubscriptionStmt: ("DROP SUBSCRIPTION", lambda s: s.subname),
        ast.DropUserMappingStmt: ("DROP USER MAPPING", lambda s: s.servername),
    }
    if type(stmt) in dropped:
        what, target = dropped[type(stmt)]
        return [(what, target(stmt))]
    if isinstance(stmt, ast.AlterEnumStmt) and stmt.oldVal:
        return [("RENAME VALUE", _names(stmt.typeName))]
    return []


def _restarts(options) -> bool:
    """``RESTART`` among a sequence's (or an identity's) options."""
    return any(option.defname == "restart" for option in options)


def destructive(stmt, allowed: set[str]) -> list[tuple[str, str]]:
    """(what, target) for each destructive part of one parsed statement the spec does not allow."""
    return [
        (what, target)
        for what, target in _findings_of(stmt)
        if target not in allowed and target.split(".")[-1] not in allowed
    ]
