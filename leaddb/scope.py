"""The rule "schema only": a migration holds this schema's objects, and nothing beyond them.

The spec ("Migrations: directory and tooling") gives each migration file one job: to create this
schema's objects (the extension, the types, the tables with their constraints, the indexes, the
comments), idempotently, in one transaction, destroying nothing and holding no logic. What a
schema is made of is therefore a short list of statements (:data:`SCHEMA_STATEMENTS`); anything
else is refused by name, with the reason:

- roles and privileges (``CREATE ROLE … SUPERUSER``, ``GRANT … TO PUBLIC``, ``ALTER DEFAULT
  PRIVILEGES``, ``OWNER TO``, row-level security, ``SECURITY LABEL``): they belong to the server's
  administrators, and a migration runs as a superuser;
- the database and the server (``ALTER SYSTEM``, ``ALTER DATABASE``, ``LOAD``, ``CHECKPOINT``,
  ``CREATE SERVER``/``FOREIGN DATA WRAPPER``/``SUBSCRIPTION``/``PUBLICATION``, tablespaces,
  untrusted extensions);
- the session (``SET``, ``SET ROLE``, ``SET SESSION AUTHORIZATION``, ``RESET``, ``DISCARD``,
  ``PREPARE``/``EXECUTE``, ``LISTEN``/``NOTIFY``, cursors, ``EXPLAIN``);
- explicit ``LOCK``, and maintenance (``VACUUM``, ``ANALYZE``, ``CLUSTER``, ``REINDEX``,
  ``REFRESH MATERIALIZED VIEW``);
- a change of persistence (``CREATE UNLOGGED``/``TEMPORARY``, ``SET LOGGED``/``UNLOGGED``) and
  the ``ALTER TABLE`` subcommands that are not additions (triggers off, ``DETACH PARTITION``, …);
- calls of server functions (:data:`SERVER_FUNCTIONS`), wherever they stand: in a ``SELECT``, a
  default, a check, an index, a view, a DO block's condition.

An allow-list, so that a statement PostgreSQL adds later is refused until someone decides it is
schema. ``DROP``, ``RENAME`` and ``TRUNCATE`` are the rule "not destructive"'s (``leaddb.lint``),
functions, triggers and rules the rule "no logic"'s, rows the rule "no logic"'s too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pglast import ast
from pglast.enums import AlterTableType, RoleSpecType, VariableSetKind

from leaddb import lint
from leaddb.errors import excerpt

# -- schema only -----------------------------------------------------------------------------------

# What a migration is made of: the statements that create and extend this schema's objects, and the
# transaction around them. Any other statement is refused by name under "schema only" (unless the
# rules "no logic" or "not destructive" already name it): roles and privileges, the database and
# the server, the session, locks, maintenance, and whatever PostgreSQL adds next.
SCHEMA_STATEMENTS = (
    ast.TransactionStmt,
    ast.CreateExtensionStmt,
    ast.CreateSchemaStmt,
    ast.CreateStmt,
    ast.IndexStmt,
    ast.CreateEnumStmt,
    ast.AlterEnumStmt,
    ast.CompositeTypeStmt,
    ast.CreateRangeStmt,
    ast.CreateDomainStmt,
    ast.AlterDomainStmt,
    ast.DefineStmt,
    ast.ViewStmt,
    ast.CreateTableAsStmt,
    ast.CreateSeqStmt,
    ast.AlterSeqStmt,
    ast.AlterTableStmt,
    ast.CommentStmt,
    ast.CreateStatsStmt,
    ast.CreateCastStmt,
    ast.DoStmt,
    ast.SelectStmt,  # a query; what it calls is checked (server functions)
)

# The extensions PostgreSQL 15 marks trusted (`trusted = true` in their control file): what they
# install, any role allowed to create objects could; the others reach the file system, other
# servers or the server's internals (adminpack, dblink, file_fdw, postgres_fdw, pageinspect, …).
TRUSTED_EXTENSIONS = frozenset(
    "btree_gin btree_gist citext cube dict_int fuzzystrmatch hstore intarray isn lo ltree pg_trgm "
    "pgcrypto plpgsql seg tablefunc tcn tsm_system_rows tsm_system_time unaccent uuid-ossp".split()
)

_ROLES = "roles and privileges belong to the server's administrators, not to this schema"
_SERVER = "a command on the database or the server, not on this schema"
_SESSION = "a command on the session, which a migration leaves as it found it"
_MAINTENANCE = "maintenance, not schema"
_WHY = {
    ast.CreateRoleStmt: _ROLES,
    ast.AlterRoleStmt: _ROLES,
    ast.AlterRoleSetStmt: _ROLES,
    ast.GrantStmt: _ROLES,
    ast.GrantRoleStmt: _ROLES,
    ast.AlterDefaultPrivilegesStmt: _ROLES,
    ast.AlterOwnerStmt: _ROLES,
    ast.ReassignOwnedStmt: _ROLES,
    ast.CreatePolicyStmt: _ROLES,
    ast.AlterPolicyStmt: _ROLES,
    ast.SecLabelStmt: _ROLES,
    ast.CreateUserMappingStmt: _ROLES,
    ast.AlterUserMappingStmt: _ROLES,
    ast.CreatedbStmt: _SERVER,
    ast.AlterDatabaseStmt: _SERVER,
    ast.AlterDatabaseSetStmt: _SERVER,
    ast.AlterDatabaseRefreshCollStmt: _SERVER,
    ast.AlterSystemStmt: _SERVER,
    ast.CreateTableSpaceStmt: _SERVER,
    ast.AlterTableSpaceOptionsStmt: _SERVER,
    ast.AlterTableMoveAllStmt: _SERVER,
    ast.LoadStmt: _SERVER,
    ast.CheckPointStmt: _SERVER,
    ast.CreateForeignServerStmt: _SERVER,
    ast.AlterForeignServerStmt: _SERVER,
    ast.CreateFdwStmt: _SERVER,
    ast.AlterFdwStmt: _SERVER,
    ast.CreateForeignTableStmt: _SERVER,
    ast.ImportForeignSchemaStmt: _SERVER,
    ast.CreateSubscriptionStmt: _SERVER,
    ast.AlterSubscriptionStmt: _SERVER,
    ast.CreatePublicationStmt: _SERVER,
    ast.AlterPublicationStmt: _SERVER,
    ast.CreateAmStmt: _SERVER,
    ast.AlterExtensionStmt: _SERVER,
    ast.AlterExtensionContentsStmt: _SERVER,
    ast.AlterEventTrigStmt: _SERVER,
    ast.VariableSetStmt: _SESSION,
    ast.VariableShowStmt: _SESSION,
    ast.DiscardStmt: _SESSION,
    ast.ConstraintsSetStmt: _SESSION,
    ast.PrepareStmt: _SESSION,
    ast.ExecuteStmt: _SESSION,
    ast.DeallocateStmt: _SESSION,
    ast.DeclareCursorStmt: _SESSION,
    ast.FetchStmt: _SESSION,
    ast.ClosePortalStmt: _SESSION,
    ast.ListenStmt: _SESSION,
    ast.UnlistenStmt: _SESSION,
    ast.NotifyStmt: _SESSION,
    ast.ExplainStmt: _SESSION,
    ast.CallStmt: "CALL runs a procedure: logic, not schema",
    ast.LockStmt: "an explicit lock, beyond those its own statements take: it blocks other sessions",
    ast.VacuumStmt: _MAINTENANCE,
    ast.ClusterStmt: _MAINTENANCE,
    ast.ReindexStmt: _MAINTENANCE,
    ast.RefreshMatViewStmt: _MAINTENANCE,
}
_NAMES = {
    ast.CreatedbStmt: "CREATE DATABASE",
    ast.AlterDatabaseSetStmt: "ALTER DATABASE … SET",
    ast.AlterRoleSetStmt: "ALTER ROLE … SET",
    ast.AlterOwnerStmt: "ALTER … OWNER TO",
    ast.GrantRoleStmt: "GRANT role",
    ast.SecLabelStmt: "SECURITY LABEL",
    ast.CreateForeignServerStmt: "CREATE SERVER",
    ast.AlterForeignServerStmt: "ALTER SERVER",
    ast.CreateFdwStmt: "CREATE FOREIGN DATA WRAPPER",
    ast.AlterFdwStmt: "ALTER FOREIGN DATA WRAPPER",
    ast.CreateAmStmt: "CREATE ACCESS METHOD",
    ast.AlterExtensionContentsStmt: "ALTER EXTENSION … ADD/DROP",
    ast.AlterEventTrigStmt: "ALTER EVENT TRIGGER",
    ast.VariableShowStmt: "SHOW",
    ast.ConstraintsSetStmt: "SET CONSTRAINTS",
    ast.DeclareCursorStmt: "DECLARE … CURSOR",
    ast.ClosePortalStmt: "CLOSE",
    ast.CheckPointStmt: "CHECKPOINT",
    ast.RefreshMatViewStmt: "REFRESH MATERIALIZED VIEW",
    ast.CreateTableSpaceStmt: "CREATE TABLESPACE",
    ast.AlterTableSpaceOptionsStmt: "ALTER TABLESPACE",
    ast.AlterTableMoveAllStmt: "ALTER … ALL IN TABLESPACE",
    ast.AlterDatabaseRefreshCollStmt: "ALTER DATABASE … REFRESH COLLATION VERSION",
    ast.AlterSubscriptionStmt: "ALTER SUBSCRIPTION",
    ast.AlterPublicationStmt: "ALTER PUBLICATION",
}

# ALTER TABLE subcommands that add to, or tune, this schema's tables; the destructive ones are the
# rule "not destructive"'s (leaddb.lint); any other is refused by name
_SCHEMA_SUBCOMMANDS = frozenset(
    {
        AlterTableType.AT_AddColumn,
        AlterTableType.AT_AddColumnToView,
        AlterTableType.AT_ColumnDefault,
        AlterTableType.AT_AddConstraint,
        AlterTableType.AT_ValidateConstraint,
        AlterTableType.AT_AlterConstraint,
        AlterTableType.AT_AddIndex,
        AlterTableType.AT_AddIndexConstraint,
        AlterTableType.AT_SetStatistics,
        AlterTableType.AT_SetStorage,
        AlterTableType.AT_SetCompression,
        AlterTableType.AT_SetOptions,
        AlterTableType.AT_ResetOptions,
        AlterTableType.AT_SetRelOptions,
        AlterTableType.AT_ResetRelOptions,
        AlterTableType.AT_ClusterOn,
        AlterTableType.AT_DropCluster,
        AlterTableType.AT_AddIdentity,
        AlterTableType.AT_SetIdentity,
        AlterTableType.AT_AttachPartition,
        AlterTableType.AT_AddInherit,
        AlterTableType.AT_AddOf,
        *lint.DESTRUCTIVE_SUBCOMMANDS,
    }
)
_PERSISTENCE = "it changes a table's persistence (an unlogged table is emptied after a crash)"
_SUBCOMMANDS = {
    AlterTableType.AT_SetLogged: ("SET LOGGED", _PERSISTENCE),
    AlterTableType.AT_SetUnLogged: ("SET UNLOGGED", _PERSISTENCE),
    AlterTableType.AT_ChangeOwner: ("OWNER TO", _ROLES),
    AlterTableType.AT_EnableRowSecurity: ("ENABLE ROW LEVEL SECURITY", _ROLES),
    AlterTableType.AT_DisableRowSecurity: ("DISABLE ROW LEVEL SECURITY", _ROLES),
    AlterTableType.AT_ForceRowSecurity: ("FORCE ROW LEVEL SECURITY", _ROLES),
    AlterTableType.AT_NoForceRowSecurity: ("NO FORCE ROW LEVEL SECURITY", _ROLES),
    AlterTableType.AT_ReplicaIdentity: ("REPLICA IDENTITY", _SERVER),
    AlterTableType.AT_SetTableSpace: ("SET TABLESPACE", _SERVER),
    AlterTableType.AT_SetAccessMethod: ("SET ACCESS METHOD", _SERVER),
    AlterTableType.AT_GenericOptions: ("OPTIONS", _SERVER),
    AlterTableType.AT_DropInherit: ("NO INHERIT", "it takes a table's rows out of its parent's"),
    AlterTableType.AT_DropOf: ("NOT OF", "it unties a typed table from its type"),
    AlterTableType.AT_DetachPartition: ("DETACH PARTITION", "it takes a partition's rows out of the table"),
    AlterTableType.AT_DetachPartitionFinalize: ("DETACH PARTITION … FINALIZE", "as DETACH PARTITION"),
}
# objects of the server or the whole database a comment would change (a database's comment is
# its owner's: a reset carries it over)
_BEYOND_COMMENTS = {
    "OBJECT_DATABASE": "DATABASE",
    "OBJECT_ROLE": "ROLE",
    "OBJECT_TABLESPACE": "TABLESPACE",
    "OBJECT_SUBSCRIPTION": "SUBSCRIPTION",
    "OBJECT_PUBLICATION": "PUBLICATION",
    "OBJECT_FOREIGN_SERVER": "SERVER",
    "OBJECT_FDW": "FOREIGN DATA WRAPPER",
    "OBJECT_EVENT_TRIGGER": "EVENT TRIGGER",
    "OBJECT_LANGUAGE": "LANGUAGE",
    "OBJECT_ACCESS_METHOD": "ACCESS METHOD",
}
_TRIGGERS = "it turns triggers off or on (the foreign keys' among them) or rules: logic, not schema"


def beyond_schema(node) -> list[str]:
    """What in one statement is not schema, each by name with the reason: the statement itself
    when it is not one a schema is made of, else the parts of it that reach beyond the schema."""
    if not isinstance(node, SCHEMA_STATEMENTS):
        return [
            f"{_statement_name(node)} is not schema: {_WHY.get(type(node), 'not a statement of a schema')}"
        ]
    found = []
    if isinstance(node, ast.CreateExtensionStmt) and node.extname not in TRUSTED_EXTENSIONS:
        found.append(
            f"CREATE EXTENSION {excerpt(node.extname, 40)} is not schema: not an extension PostgreSQL "
            "marks trusted, so it can reach beyond the database"
        )
    if isinstance(node, ast.CommentStmt) and node.objtype.name in _BEYOND_COMMENTS:
        found.append(f"COMMENT ON {_BEYOND_COMMENTS[node.objtype.name]} is not schema: {_SERVER}")
    if isinstance(node, ast.CreateSchemaStmt) and node.authrole is not None:
        found.append(f"CREATE SCHEMA … AUTHORIZATION is not schema: {_ROLES}")
    relation = _created_relation(node)
    if relation is not None and relation.relpersistence in ("u", "t"):
        kind = "UNLOGGED" if relation.relpersistence == "u" else "TEMPORARY"
        why = "it is emptied after a crash" if kind == "UNLOGGED" else "it is gone when the session ends"
        found.append(f"CREATE {kind} {_created_kind(node)} is not schema: {why}")
    if isinstance(node, ast.AlterTableStmt):
        for command in node.cmds or ():
            if command.subtype in _SCHEMA_SUBCOMMANDS:
                continue
            words = _words(command.subtype.name.removeprefix("AT_"))
            words = re.sub(r"\bTRIG\b", "TRIGGER", words)
            name, why = _SUBCOMMANDS.get(command.subtype, (words, ""))
            if not why:
                trigger = "Trig" in command.subtype.name or "Rule" in command.subtype.name
                why = _TRIGGERS if trigger else "not a change a schema's migration makes"
            found.append(f"ALTER TABLE … {name} is not schema: {why}")
    return found


def _created_relation(node):
    """The relation a CREATE TABLE, TABLE AS, SEQUENCE or VIEW makes (its persistence says
    whether it is unlogged or temporary)."""
    if isinstance(node, ast.CreateStmt):
        return node.relation
    if isinstance(node, ast.CreateTableAsStmt):
        return node.into.rel
    if isinstance(node, ast.CreateSeqStmt):
        return node.sequence
    if isinstance(node, ast.ViewStmt):
        return node.view
    return None


def _created_kind(node) -> str:
    if isinstance(node, ast.CreateSeqStmt):
        return "SEQUENCE"
    if isinstance(node, ast.ViewStmt):
        return "VIEW"
    return "TABLE"


def _statement_name(node) -> str:
    """The SQL words a statement starts with, as the messages name it."""
    if isinstance(node, ast.GrantStmt):
        word = "GRANT" if node.is_grant else "REVOKE"
        public = any(g.roletype == RoleSpecType.ROLESPEC_PUBLIC for g in node.grantees or ())
        return f"{word} … {'TO' if node.is_grant else 'FROM'} PUBLIC" if public else word
    if isinstance(node, ast.CreateRoleStmt):
        word = node.stmt_type.name.removeprefix("ROLESTMT_")
        return f"CREATE {word}" + _superuser(node.options)
    if isinstance(node, ast.AlterRoleStmt):
        return "ALTER ROLE" + _superuser(node.options)
    if isinstance(node, ast.VariableSetStmt):
        if node.kind in (VariableSetKind.VAR_RESET, VariableSetKind.VAR_RESET_ALL):
            return "RESET"
        setting = {"role": "ROLE", "session_authorization": "SESSION AUTHORIZATION"}.get(node.name)
        return f"SET {setting}" if setting else f"SET {excerpt(node.name, 40)}"
    if isinstance(node, ast.VacuumStmt):
        return "VACUUM" if node.is_vacuumcmd else "ANALYZE"
    return _NAMES.get(type(node)) or _words(type(node).__name__.removesuffix("Stmt"))


def _superuser(options) -> str:
    """`` … SUPERUSER`` when a role's options make it one (``SUPERUSER`` is ``superuser = true``,
    ``NOSUPERUSER`` false)."""
    return " … SUPERUSER" if any(o.defname == "superuser" and o.arg.boolval for o in options or ()) else ""


def _words(camel: str) -> str:
    """``CreateRoleStmt`` → ``CREATE ROLE``: the name of a statement PostgreSQL's parser gives."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", camel).upper()


# Functions that act beyond the schema: on sessions and backends, files, large objects, other
# databases, the server's configuration, WAL and replication, locks and sleeps (pg_*, lo_*,
# dblink*), settings and sequence positions, and those that run SQL handed to them as text.
SERVER_FUNCTION_PREFIXES = ("pg_", "lo_", "dblink")
SERVER_FUNCTIONS = frozenset(
    {
        "set_config",
        "setval",
        "loread",
        "lowrite",
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
        "ts_stat",
        "ts_rewrite",
        "crosstab",
        "crosstab2",
        "crosstab3",
        "crosstab4",
        "connectby",
    }
)


def server_functions(parts: Sequence) -> list[str]:
    """The server functions (:data:`SERVER_FUNCTIONS`) a statement calls, each once, in order."""
    # the parser cuts names to 63 bytes (NAMEDATALEN), and the rule "text" refused control characters
    names = (part.funcname[-1].sval.lower() for part in parts if isinstance(part, ast.FuncCall))
    return list(
        dict.fromkeys(
            name for name in names if name in SERVER_FUNCTIONS or name.startswith(SERVER_FUNCTION_PREFIXES)
        )
    )
