"""The spec's rules for migration files, checked over every file before anything is applied.

``Technical-Architecture-Specification.md``, section "Migrations: directory and tooling", lists
the rules every migration file follows. Each one is checked here, under the short name every
message carries (``<file>:<line>: rule "one transaction": …``):

- ``naming``: ``^[0-9]{4}_[a-z0-9_]+\\.sql$``, numbers contiguous from 0001, nothing else in
  the directory, and each a regular file of it (never a link, a FIFO or device, another hard link);
- ``text``: UTF-8 without BOM, LF, no tabs, no control or bidirectional characters, no trailing
  whitespace, one newline at the end;
- ``printed in the spec``: the Text rule's "byte-identical to its block", both ways: every file
  is its block, every block a file (nothing runs that the spec does not print);
- ``header``: the first line is ``-- migration: <declared directory>/<file name>``;
- ``one transaction``: everything after the header is one ``BEGIN;`` … ``COMMIT;`` with no other
  transaction control, and no statement that cannot run inside a transaction block;
- ``not destructive``: what ``leaddb.lint`` finds (one definition);
- ``no logic``: no functions, procedures, triggers, rules, aggregates, operators…, and no data
  (INSERT, UPDATE, DELETE, MERGE, COPY, SELECT INTO, CREATE TABLE AS), DO blocks in PL/pgSQL;
- ``schema only``: what ``leaddb.scope`` finds (an allow-list of what a schema is made of);
- ``plain SQL``: no psql meta-command or variable, no syntax error, not empty.

Statements are read with PostgreSQL's own parser (pglast), and everything inside an anonymous
``DO`` block with PL/pgSQL's (statements and expressions): a guard may create a type, never a
function, a row or a role. Dynamic SQL (``EXECUTE``) is refused: no parser can see what it runs.
A message quotes no more of a file than ``errors.excerpt`` allows. Not checked here: "Idempotent
by construction" (``db.reapply`` proves it on a server) and "Append only" (it needs the files'
history).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import pairwise
from pathlib import PurePosixPath

import pglast
from pglast import ast
from pglast.enums import (
    DiscardMode,
    ObjectType,
    TransactionStmtKind,
)
from pglast.parser import ParseError

from leaddb import lint, scope
from leaddb.errors import excerpt
from leaddb.migrations import FILENAME, LineIndex
from leaddb.spec import SPEC_FILENAME

# what the rules judge is read by leaddb.migrations (naming, text), and every rule reports in the
# shape of leaddb.violations; both named here too, for the callers that know this room only
from leaddb.violations import (  # noqa: F401 - re-exported
    FIXES,
    HEADER,
    MAX_WHAT,
    NAMING,
    NO_LOGIC,
    NOT_DESTRUCTIVE,
    ONE_TRANSACTION,
    PLAIN_SQL,
    PRINTED,
    SCHEMA_ONLY,
    TEXT,
    RulesBroken,
    Violation,
    refuse,
)

# -- header, one transaction, not destructive, no logic -------------------------------------------


def expected_header(declared_directory: str, name: str) -> str:
    return f"-- migration: {declared_directory}/{name}"


def check_header(file: str, text: str, header: str) -> list[Violation]:
    first = text.partition("\n")[0]
    if first == header:
        return []
    fix = f"make the first line `{header}`, the file's own path"
    if first.startswith("-- migration:"):
        return [
            Violation(
                file, 1, HEADER, f"the header is `{excerpt(first, 100)}`; this file's is `{header}`", fix
            )
        ]
    return [
        Violation(file, 1, HEADER, f"the first line is `{excerpt(first)}`, not the header `{header}`", fix)
    ]


def check_files(migrations: Sequence, declared_directory: str, allowed: set[str]) -> list[Violation]:
    """Header, plain SQL, one transaction, not destructive and no logic over every file
    (``leaddb.migrations.Migration``); ``allowed``: the objects the spec lets be destroyed."""
    violations = []
    for migration in migrations:
        file = migration.display()
        violations += check_header(file, migration.text, expected_header(declared_directory, migration.name))
        try:
            statements = migration.statements
        except RulesBroken as exc:  # a meta-command or a syntax error: nothing more to read
            violations += exc.violations
            continue
        violations += check_statements(file, migration.text, statements, allowed)
    return violations


def check_statements(file: str, text: str, statements: Sequence, allowed: set[str]) -> list[Violation]:
    """The rules "one transaction", "not destructive" and "no logic" over the parsed statements
    (``leaddb.migrations.Statement``, located by the parser's split)."""
    violations = []
    if not statements:
        return [
            Violation(
                file,
                0,
                PLAIN_SQL,
                "holds no SQL statement, only comments",
                "write its SQL or remove the file",
            )
        ]
    # the parse trees, one per statement (the split that located them asked the same parser)
    nodes = [raw.stmt for raw in pglast.parse_sql(text)]
    lines = LineIndex(text)
    first, last = statements[0], statements[-1]
    if not _is(nodes[0], BEGIN):
        violations.append(
            Violation(
                file,
                first.line,
                ONE_TRANSACTION,
                f"the first statement is `{excerpt(first.sql)}`, not BEGIN: a failure would leave the "
                "statements before it applied",
                "start the file (after the header and its comment) with BEGIN;",
            )
        )
    if len(statements) == 1 or not _is(nodes[-1], COMMIT):
        violations.append(
            Violation(
                file,
                last.line,
                ONE_TRANSACTION,
                f"the last statement is `{excerpt(last.sql)}`, not COMMIT",
                "end the file with COMMIT; (only comments may follow it)",
            )
        )
    elif nodes[-1].chain:
        violations.append(
            Violation(
                file,
                last.line,
                ONE_TRANSACTION,
                "COMMIT AND CHAIN opens a new transaction",
                "end it with COMMIT;",
            )
        )
    for index, statement in enumerate(statements):
        inner = 0 < index < len(statements) - 1
        for line, rule, what in _node_violations(nodes[index], statement.line, (lines, 1), allowed, inner):
            violations.append(Violation(file, line, rule, what))
    return violations


# BEGIN and START TRANSACTION; COMMIT and END
BEGIN = (TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START)
COMMIT = (TransactionStmtKind.TRANS_STMT_COMMIT,)


def _is(node, kinds) -> bool:
    return isinstance(node, ast.TransactionStmt) and node.kind in kinds


def _node_violations(
    node, line: int, source: tuple, allowed: set[str], inner: bool
) -> Iterator[tuple[int, str, str]]:
    """(line, rule, what) for one statement starting on ``line``; ``source``: the text it was parsed
    from (or its ``LineIndex``) and the line that text starts on; ``inner``: not the file's first
    or last statement."""
    logic = _logic(node)
    if logic:
        yield line, NO_LOGIC, f"{logic} is logic, not schema"
        return  # its body (a rule's actions, a function's SQL body) is part of the same refusal
    if isinstance(node, ast.TransactionStmt) and inner:
        yield line, ONE_TRANSACTION, f"{_transaction_word(node)} inside the file's transaction"
    outside = _outside_transaction(node)
    if outside:
        yield line, ONE_TRANSACTION, f"{outside} cannot run inside a transaction block"
    parts = _nodes(node)
    data = _data(node, parts)
    for what in data:
        yield line, NO_LOGIC, f"{what} writes data"
    for what, target in lint.destructive(node, allowed):
        yield line, NOT_DESTRUCTIVE, f"{what} on {target}"
    if not data and not isinstance(node, lint.DESTRUCTIVE_STATEMENTS):
        for what in scope.beyond_schema(node):
            yield line, SCHEMA_ONLY, what
    for name in scope.server_functions(parts):
        yield line, SCHEMA_ONLY, f"calls {name}(), a server function: it acts beyond this schema"
    for element in node.schemaElts or () if isinstance(node, ast.CreateSchemaStmt) else ():
        # CREATE SCHEMA … CREATE TABLE … GRANT …: what each element is (what it calls: above)
        logic = _logic(element)
        if logic:
            yield line, NO_LOGIC, f"{logic} is logic, not schema"
        else:
            for what in scope.beyond_schema(element):
                yield line, SCHEMA_ONLY, what
    if isinstance(node, ast.DoStmt):
        yield from _do_block(node, source, allowed)


def _transaction_word(node) -> str:
    return node.kind.name.removeprefix("TRANS_STMT_").replace("_", " ")


def _logic(node) -> str | None:
    if isinstance(node, ast.CreateFunctionStmt):
        return "CREATE PROCEDURE" if node.is_procedure else "CREATE FUNCTION"
    if isinstance(node, ast.AlterFunctionStmt):
        return "ALTER FUNCTION"
    if isinstance(node, ast.CreateTrigStmt):
        return "CREATE CONSTRAINT TRIGGER" if node.isconstraint else "CREATE TRIGGER"
    if isinstance(node, ast.CreateEventTrigStmt):
        return "CREATE EVENT TRIGGER"
    if isinstance(node, ast.RuleStmt):
        return "CREATE RULE"
    if isinstance(node, ast.DefineStmt):
        kinds = {
            ObjectType.OBJECT_AGGREGATE: "CREATE AGGREGATE",
            ObjectType.OBJECT_OPERATOR: "CREATE OPERATOR",
            ObjectType.OBJECT_TSPARSER: "CREATE TEXT SEARCH PARSER",
            ObjectType.OBJECT_TSTEMPLATE: "CREATE TEXT SEARCH TEMPLATE",
        }
        if node.kind == ObjectType.OBJECT_TYPE and node.definition:
            return "CREATE TYPE with input/output functions (a base type)"
        return kinds.get(node.kind)
    if isinstance(node, (ast.CreateOpClassStmt, ast.CreateOpFamilyStmt, ast.AlterOpFamilyStmt)):
        return "an operator class or family"
    if isinstance(node, ast.CreateCastStmt) and node.func:
        return "CREATE CAST … WITH FUNCTION"
    if isinstance(node, (ast.CreateTransformStmt, ast.CreateConversionStmt)):
        return "CREATE TRANSFORM" if isinstance(node, ast.CreateTransformStmt) else "CREATE CONVERSION"
    if isinstance(node, ast.CreatePLangStmt):
        return "CREATE LANGUAGE"
    return None


def _outside_transaction(node) -> str | None:
    """Statements PostgreSQL refuses inside a transaction block."""
    if isinstance(node, ast.IndexStmt) and node.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if isinstance(node, ast.DropStmt) and node.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if isinstance(node, ast.ReindexStmt) and any(p.defname == "concurrently" for p in node.params or ()):
        return "REINDEX CONCURRENTLY"
    if isinstance(node, ast.VacuumStmt) and node.is_vacuumcmd:
        return "VACUUM"
    simple = {
        ast.CreatedbStmt: "CREATE DATABASE",
        ast.DropdbStmt: "DROP DATABASE",
        ast.AlterSystemStmt: "ALTER SYSTEM",
        ast.CreateTableSpaceStmt: "CREATE TABLESPACE",
        ast.DropTableSpaceStmt: "DROP TABLESPACE",
    }
    if type(node) in simple:
        return simple[type(node)]
    if isinstance(node, ast.DiscardStmt) and node.target == DiscardMode.DISCARD_ALL:
        return "DISCARD ALL"
    return None


def _data(node, parts: Sequence) -> list[str]:
    """What in the statement writes rows (a data-modifying WITH included); ``parts``: every node
    of the statement (:func:`_nodes`)."""
    found = []
    if isinstance(node, ast.CopyStmt):
        direction = "COPY FROM" if node.is_from else "COPY TO"
        found.append(f"{direction} PROGRAM (a shell command)" if node.is_program else direction)
    if isinstance(node, ast.SelectStmt) and node.intoClause:
        found.append("SELECT INTO")
    if isinstance(node, ast.CreateTableAsStmt) and not node.into.skipData:
        found.append(
            "CREATE MATERIALIZED VIEW" if node.objtype == ObjectType.OBJECT_MATVIEW else "CREATE TABLE AS"
        )
    if isinstance(node, ast.RefreshMatViewStmt) and not node.skipData:
        found.append("REFRESH MATERIALIZED VIEW")
    writers = {
        ast.InsertStmt: "INSERT",
        ast.UpdateStmt: "UPDATE",
        ast.DeleteStmt: "DELETE",
        ast.MergeStmt: "MERGE",
    }
    for inner in parts:
        if type(inner) in writers:
            found.append(writers[type(inner)])
    return found


def _nodes(node) -> list:
    """Every node of a parse tree, in the order they are written (the statement's own first),
    in one pass without recursion: every check that looks inside a statement reads this list."""
    found, stack = [], [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            found.append(item)
            children = [getattr(item, name) for name in item.__slots__]
            stack.extend(c for c in reversed(children) if isinstance(c, (ast.Node, tuple, list)))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
    return found


# -- inside an anonymous DO block ------------------------------------------------------------------

# PL/pgSQL statements that run SQL built at run time: no parser sees what they run
_DYNAMIC = {
    "PLpgSQL_stmt_dynexecute": "EXECUTE",
    "PLpgSQL_stmt_dynfors": "FOR … IN EXECUTE",
}
_DYNAMIC_QUERY = {
    "PLpgSQL_stmt_open": "OPEN … FOR EXECUTE",
    "PLpgSQL_stmt_return_query": "RETURN QUERY EXECUTE",
}
# PL/pgSQL's parse mode (RawParseMode) of a statement; expressions and assignments have others
_STATEMENT = 0


def _do_block(node, source: tuple, allowed: set[str]) -> Iterator[tuple[int, str, str]]:
    """Everything a PL/pgSQL DO body runs, held to the same rules: its statements (COMMIT and
    ROLLBACK included) and the expressions of every statement (conditions, assignments,
    defaults, RAISE arguments: they run too). A body in another language, a body PL/pgSQL
    cannot parse, and dynamic SQL (``EXECUTE``) are refused: a check that cannot read what
    runs passes nothing. ``source``: the text the block was parsed from (or its ``LineIndex``)
    and the file line that text starts on."""
    text, first_line = source
    lines = text if isinstance(text, LineIndex) else LineIndex(text)
    options = {arg.defname: arg for arg in node.args}
    body = options["as"]
    # PL/pgSQL counts lines from the one the body starts on: the line of the opening quote
    start = first_line + lines.line(body.arg_location) - 1
    if "language" in options and options["language"].arg.sval.lower() != "plpgsql":
        language = excerpt(options["language"].arg.sval, 40)
        yield (
            start,
            NO_LOGIC,
            f"a DO block in {language}: the spec's DO blocks are PL/pgSQL, the one language the checks read",
        )
        return
    quoted = "'" + body.arg.sval.replace("'", "''") + "'"  # same text, same lines
    try:
        tree = pglast.parse_plpgsql(f"CREATE FUNCTION leaddb_do() RETURNS void LANGUAGE plpgsql AS {quoted}")
    except ParseError as exc:
        yield (
            start,
            PLAIN_SQL,
            f"a DO block PL/pgSQL cannot parse ({excerpt(str(exc.args[0]), 80)}): no check can read it",
        )
        return
    for lineno, kind, query in _plpgsql_parts(tree, 1):
        at = start + lineno - 1
        if kind in ("PLpgSQL_stmt_commit", "PLpgSQL_stmt_rollback"):
            word = kind.removeprefix("PLpgSQL_stmt_").upper()
            yield at, ONE_TRANSACTION, f"{word} inside a DO block, inside the file's transaction"
            continue
        if kind == "dynamic":
            yield (
                at,
                SCHEMA_ONLY,
                f"{query} of SQL built at run time (in a DO block): no check can read what it runs",
            )
            continue
        # an expression or an assignment is checked as a SELECT of it (``:=`` read as ``=``)
        sql = query if kind == _STATEMENT else f"SELECT {_assignment(query)}"
        try:
            parsed = pglast.parse_sql(sql)
        except ParseError:  # PL/pgSQL parsed it already: only a form these checks misread
            yield at, PLAIN_SQL, "a statement of a DO block that the checks cannot read"
            continue
        for raw in parsed:
            for line, rule, what in _node_violations(raw.stmt, at, (query, at), allowed, inner=True):
                yield line, rule, f"{what} (in a DO block)"


def _assignment(query: str) -> str:
    """``target := value`` as an expression the SQL parser reads (``target = value``), so that
    what both sides call is checked."""
    from pglast.parser import scan

    assign = next((t for t in scan(query) if t.name in ("COLON_EQUALS",)), None)  # the scanner's :=
    return query if assign is None else query[: assign.start] + "=" + query[assign.end + 1 :]


def _plpgsql_parts(tree, lineno: int) -> Iterator[tuple[int, str | int, str]]:
    """(line in the body, kind, text) for every part of a PL/pgSQL tree that runs: COMMIT and
    ROLLBACK ("PLpgSQL_stmt_commit", …), dynamic SQL ("dynamic", the statement's words), and
    every expression (its parse mode: 0 a statement, 2 an expression, 3–5 an assignment)."""
    if isinstance(tree, list):
        for item in tree:
            yield from _plpgsql_parts(item, lineno)
    elif isinstance(tree, dict):
        lineno = tree.get("lineno", lineno)
        for key, value in tree.items():
            if key in ("PLpgSQL_stmt_commit", "PLpgSQL_stmt_rollback"):
                yield value.get("lineno", lineno), key, ""
            elif key in _DYNAMIC or (key in _DYNAMIC_QUERY and "dynquery" in value):
                yield value.get("lineno", lineno), "dynamic", _DYNAMIC.get(key) or _DYNAMIC_QUERY[key]
            elif key == "PLpgSQL_expr":
                yield lineno, value["parseMode"], value["query"]
            else:
                yield from _plpgsql_parts(value, lineno)


# -- printed in the spec -------------------------------------------------------------------------


def check_printed(
    migrations: Sequence, blocks: Sequence, declared_directory: str, exists: Callable[[str], bool]
) -> list[Violation]:
    """Verbatim both ways: every migration file is byte for byte the block the spec prints for it
    (``-- migration: <file>``), and every block the spec prints is a file. So nothing runs that
    the spec does not print, and nothing the spec prints is left out. ``migrations``: the files
    read (``leaddb.migrations.Migration``); ``blocks``: the spec's migration blocks, in the
    spec's order; ``exists``: whether the directory holds an entry of that name (a file that
    could not be read is refused by its own rule, not reported missing here)."""
    directory = PurePosixPath(declared_directory)
    violations = []
    printed: dict[PurePosixPath, list] = {}
    for block in blocks:
        printed.setdefault(PurePosixPath(block.name), []).append(block)
    for path, found in printed.items():
        file = path.as_posix()
        if len(found) > 1:
            lines = ", ".join(str(b.line) for b in found)
            what = f"printed {len(found)} times in the spec ({SPEC_FILENAME} lines {lines})"
            violations.append(Violation(file, 0, PRINTED, what, "print each migration file once"))
        if path.parent != directory:
            what = f"printed in the spec ({found[0].where}), outside the migrations directory `{directory}`"
            fix = f"name the file as `-- migration: {directory}/NNNN_name.sql` on the block's first line"
            violations.append(Violation(file, 0, PRINTED, what, fix))
        elif not exists(path.name):
            what = f"printed in the spec ({found[0].where}), but there is no such file"
            fix = "write the file: the block, byte for byte (or remove the block)"
            violations.append(Violation(file, 0, PRINTED, what, fix))
    order = [path.name for path in printed if path.parent == directory and FILENAME.fullmatch(path.name)]
    if order != sorted(order):
        late = next(b for a, b in pairwise(order) if b < a)
        what = "printed in the spec after a file with a higher number: the spec prints them in apply order"
        violations.append(
            Violation((directory / late).as_posix(), 0, PRINTED, what, "print the blocks in file-name order")
        )
    for migration in migrations:
        found = printed.get(directory / migration.name)
        if not found:
            what = "the spec prints no block for this file, and nothing runs that the spec does not print"
            violations.append(Violation(migration.display(), 0, PRINTED, what))
            continue
        block = found[0]
        if migration.text != block.sql:
            line = _first_difference(migration.text, block.sql)
            spec_line = block.line + line - 1
            what = f"differs from its block in the spec ({SPEC_FILENAME}:{spec_line}) from this line on"
            fix = "make the file its spec block byte for byte (change the spec first, then copy the block)"
            violations.append(Violation(migration.display(), line, PRINTED, what, fix))
    return violations


def _first_difference(a: str, b: str) -> int:
    """The first line (1-based) where two texts differ."""
    left, right = a.split("\n"), b.split("\n")
    for number, (x, y) in enumerate(zip(left, right, strict=False), 1):
        if x != y:
            return number
    return min(len(left), len(right))
