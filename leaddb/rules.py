"""The spec's rules for migration files, checked over every file before anything is applied.

``Technical-Architecture-Specification.md``, section "Migrations: directory and tooling", lists
the rules every migration file follows. Each one is checked here, under the short name every
message carries (``<file>:<line>: rule "one transaction": …``):

- ``naming``: ``^[0-9]{4}_[a-z0-9_]+\\.sql$``, numbers contiguous from 0001, nothing else in
  the directory;
- ``text``: UTF-8 without BOM, LF, no tabs, no trailing whitespace, one newline at the end;
- ``header``: the first line is ``-- migration: <declared directory>/<file name>``;
- ``one transaction``: everything after the header is one ``BEGIN;`` … ``COMMIT;`` with no other
  transaction control, and no statement that cannot run inside a transaction block;
- ``not destructive``: what ``leaddb.lint`` finds (one definition);
- ``no logic``: no functions, procedures, triggers, rules, aggregates, operators…, and no data
  (INSERT, UPDATE, DELETE, MERGE, COPY, SELECT INTO, CREATE TABLE AS);
- ``plain SQL``: no psql meta-command, no syntax error, not empty.

Statements are read with PostgreSQL's own parser (pglast), and the static statements inside an
anonymous ``DO`` block with PL/pgSQL's: a guard may create a type, never a function or a row.
Dynamic SQL (``EXECUTE``) is not visible to a parser. Not checked here: "Idempotent by
construction" (``db.reapply`` proves it on a server), "byte-identical to its block" (``db.drift``)
and "Append only" (it needs the files' history).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pglast
from pglast import ast
from pglast.enums import DiscardMode, ObjectType, TransactionStmtKind
from pglast.parser import ParseError

from leaddb import lint
from leaddb.errors import MigrationError
from leaddb.spec import MIGRATIONS_HEADING, SPEC_FILENAME

NAMING = "naming"
TEXT = "text"
HEADER = "header"
ONE_TRANSACTION = "one transaction"
NOT_DESTRUCTIVE = "not destructive"
NO_LOGIC = "no logic"
PLAIN_SQL = "plain SQL"

# the next step for each rule, when a violation carries no more precise one
FIXES = {
    NAMING: "name each file NNNN_snake_name.sql, numbered contiguously from 0001 in apply order, "
    "and keep nothing else in the migrations directory: the container executes every file there",
    TEXT: "save the file as UTF-8 without BOM, with LF line endings, no tabs, no trailing whitespace "
    "and one newline at the end",
    HEADER: "make the first line `-- migration: <migrations directory>/<file name>`, the file's own path",
    ONE_TRANSACTION: "wrap everything after the header in one BEGIN; … COMMIT; and nothing else "
    "that starts or ends a transaction",
    NOT_DESTRUCTIVE: "migrations only add; if the spec really means it, say so there with "
    "'Destructive change allowed: `object`'",
    NO_LOGIC: "migrations hold schema only: no functions, procedures, triggers, rules or data "
    "(a guard belongs in an anonymous DO block)",
    PLAIN_SQL: "migrations are plain SQL, applied the same way by psql and by the runner; fix the file",
}

# the spec's pattern; fullmatch, and [0-9] rather than \d, which also matches other scripts' digits
FILENAME = re.compile(r"(?P<number>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql")

BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, order=True)
class Violation:
    file: str
    line: int  # 1-based; 0 when the file as a whole breaks the rule (its name, its number)
    rule: str
    what: str
    fix: str = field(default="", compare=False)

    def describe(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f'{where}: rule "{self.rule}": {self.what}'

    @property
    def next_step(self) -> str:
        return self.fix or FIXES[self.rule]


class RulesBroken(MigrationError):
    """One or more migration files break the spec's rules; nothing was applied."""

    def __init__(self, violations: Iterable[Violation]) -> None:
        self.violations = sorted(violations)
        rules = f'the rules are in {SPEC_FILENAME}, section "{MIGRATIONS_HEADING}"'
        if len(self.violations) == 1:
            (only,) = self.violations
            super().__init__(only.describe(), hint=f"{only.next_step}; nothing was applied ({rules})")
            return
        listing = "\n".join(f"  - {v.describe()}" for v in self.violations)
        steps = "".join(dict.fromkeys(f"\n    - {v.rule}: {FIXES[v.rule]}" for v in self.violations))
        super().__init__(
            f"{len(self.violations)} violations of the migration rules; nothing was applied:\n{listing}",
            hint=f"fix each file above ({rules}):{steps}",
        )


def refuse(violations: Sequence[Violation]) -> None:
    if violations:
        raise RulesBroken(violations)


# -- naming -------------------------------------------------------------------------------------


def scan(
    directory: Path, display: Callable[[Path], str]
) -> tuple[list[tuple[Path, int, str]], list[Violation]]:
    """The migration files (path, number, text) in apply order, and every naming and text violation.

    Hidden files are left alone, as the image's entrypoint leaves them (``*`` skips them)."""
    violations: list[Violation] = []
    named: list[tuple[Path, int]] = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue
        match = FILENAME.fullmatch(path.name)
        if not match:
            violations.append(
                Violation(
                    display(path),
                    0,
                    NAMING,
                    "not a migration file name (expected NNNN_snake_name.sql, ^[0-9]{4}_[a-z0-9_]+\\.sql$)",
                    "rename it, or move it out of the migrations directory: the container executes "
                    "every file there",
                )
            )
        elif not path.is_file():
            violations.append(
                Violation(
                    display(path), 0, NAMING, "not a regular file", "move it out of the migrations directory"
                )
            )
        else:
            named.append((path, int(match["number"])))
    if not named and not violations:
        violations.append(
            Violation(display(directory), 0, NAMING, "no migration files", "write the first one, 0001_….sql")
        )
    violations += numbering([(display(path), number) for path, number in named])
    files = []
    for path, number in named:
        text, found = check_text(display(path), path.read_bytes())
        violations += found
        if text is not None:
            files.append((path, number, text))
    return files, violations


def numbering(files: Sequence[tuple[str, int]]) -> list[Violation]:
    """Numbers start at 0001 and are contiguous: no gaps, no repeats (``files`` in name order)."""
    fix = "number migrations contiguously from 0001 in apply order"
    violations = []
    by_number: dict[int, list[str]] = {}
    for name, number in files:
        by_number.setdefault(number, []).append(name)
    expected = 1
    for number, names in sorted(by_number.items()):
        if len(names) > 1:
            listing = ", ".join(Path(n).name for n in names)
            violations.append(
                Violation(names[1], 0, NAMING, f"duplicate number {number:04d}: {listing}", fix)
            )
        if number != expected:
            violations.append(
                Violation(names[0], 0, NAMING, f"expected number {expected:04d}, found {number:04d}", fix)
            )
        expected = number + 1
    return violations


# -- text ---------------------------------------------------------------------------------------


def check_text(file: str, data: bytes) -> tuple[str | None, list[Violation]]:
    """The file's text (LF) and its text violations; no text when it cannot be read as UTF-8
    or holds nothing."""
    violations = []
    if data.startswith(BOM):
        violations.append(
            Violation(file, 1, TEXT, "starts with a UTF-8 byte-order mark", "save it as UTF-8 without BOM")
        )
        data = data[len(BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, [*violations, Violation(file, line, TEXT, "not valid UTF-8", "save it as UTF-8")]
    if "\r" in text:
        line = text.count("\n", 0, text.index("\r")) + 1
        violations.append(
            Violation(
                file,
                line,
                TEXT,
                "CRLF line ending",
                "save it with LF endings (.gitattributes enforces eol=lf)",
            )
        )
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return None, [
            *violations,
            Violation(file, 0, PLAIN_SQL, "empty migration", "write its SQL or remove the file"),
        ]
    lines = text.split("\n")
    violations += _lines_with(file, lines, lambda s: "\t" in s, "a tab character", "indent with spaces")
    violations += _lines_with(
        file,
        lines,
        lambda s: s != s.rstrip(),
        "trailing whitespace",
        "remove the whitespace at the ends of lines",
    )
    if not text.endswith("\n"):
        violations.append(
            Violation(
                file, len(lines), TEXT, "no newline at the end of the file", "end the file with one newline"
            )
        )
    elif text.endswith("\n\n"):
        blank = len(text) - len(text.rstrip("\n")) - 1
        violations.append(
            Violation(
                file,
                len(lines) - blank,
                TEXT,
                f"{blank} blank line(s) at the end of the file",
                "end the file with exactly one newline",
            )
        )
    return text, violations


def _lines_with(file: str, lines: list[str], test, what: str, fix: str) -> list[Violation]:
    numbers = [n for n, line in enumerate(lines, 1) if test(line)]
    if not numbers:
        return []
    more = f" (and {len(numbers) - 1} more line(s))" if len(numbers) > 1 else ""
    return [Violation(file, numbers[0], TEXT, f"{what}{more}", fix)]


# -- header, one transaction, not destructive, no logic -------------------------------------------


def expected_header(declared_directory: str, name: str) -> str:
    return f"-- migration: {declared_directory}/{name}"


def check_header(file: str, text: str, header: str) -> list[Violation]:
    first = text.partition("\n")[0]
    if first == header:
        return []
    fix = f"make the first line `{header}`, the file's own path"
    if first.startswith("-- migration:"):
        return [Violation(file, 1, HEADER, f"the header is `{first}`; this file's is `{header}`", fix)]
    return [
        Violation(file, 1, HEADER, f"the first line is `{_short(first)}`, not the header `{header}`", fix)
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
    first, last = statements[0], statements[-1]
    if not _is(nodes[0], BEGIN):
        violations.append(
            Violation(
                file,
                first.line,
                ONE_TRANSACTION,
                f"the first statement is `{_short(first.sql)}`, not BEGIN: a failure would leave the "
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
                f"the last statement is `{_short(last.sql)}`, not COMMIT",
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
        for line, rule, what in _node_violations(nodes[index], statement.line, (text, 1), allowed, inner):
            violations.append(Violation(file, line, rule, what))
    return violations


# BEGIN and START TRANSACTION; COMMIT and END
BEGIN = (TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START)
COMMIT = (TransactionStmtKind.TRANS_STMT_COMMIT,)


def _is(node, kinds) -> bool:
    return isinstance(node, ast.TransactionStmt) and node.kind in kinds


def _short(sql: str, limit: int = 60) -> str:
    """The statement's first line, cut to ``limit`` characters; `` …`` when something was left out."""
    lines = sql.strip().split("\n")
    first = lines[0].strip()
    if len(first) > limit:
        return first[: limit - 2].rstrip() + " …"
    return first + " …" if len(lines) > 1 else first


def _node_violations(
    node, line: int, source: tuple[str, int], allowed: set[str], inner: bool
) -> Iterator[tuple[int, str, str]]:
    """(line, rule, what) for one statement starting on ``line``; ``source``: the text it was parsed
    from and the line that text starts on; ``inner``: not the file's first or last statement."""
    logic = _logic(node)
    if logic:
        yield line, NO_LOGIC, f"{logic} is logic, not schema"
        return  # its body (a rule's actions, a function's SQL body) is part of the same refusal
    if isinstance(node, ast.TransactionStmt) and inner:
        yield line, ONE_TRANSACTION, f"{_transaction_word(node)} inside the file's transaction"
    outside = _outside_transaction(node)
    if outside:
        yield line, ONE_TRANSACTION, f"{outside} cannot run inside a transaction block"
    for what in _data(node):
        yield line, NO_LOGIC, f"{what} writes data"
    for what, target in lint.destructive(node, allowed):
        yield line, NOT_DESTRUCTIVE, f"{what} on {target}"
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


def _data(node) -> list[str]:
    """What in the statement writes rows (a data-modifying WITH included)."""
    found = []
    if isinstance(node, ast.CopyStmt):
        found.append("COPY FROM" if node.is_from else "COPY TO")
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
    for inner in _walk(node):
        if type(inner) in writers:
            found.append(writers[type(inner)])
    return found


def _walk(node) -> Iterator:
    if isinstance(node, ast.Node):
        yield node
        for name in node.__slots__:
            yield from _walk(getattr(node, name))
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from _walk(item)


# -- inside an anonymous DO block ------------------------------------------------------------------


def _do_block(node, source: tuple[str, int], allowed: set[str]) -> Iterator[tuple[int, str, str]]:
    """The static SQL in a PL/pgSQL DO body, held to the same rules (COMMIT/ROLLBACK included);
    ``source``: the text the block was parsed from and the file line that text starts on."""
    text, first_line = source
    options = {arg.defname: arg for arg in node.args}
    if "language" in options and options["language"].arg.sval.lower() != "plpgsql":
        return  # another language: the server judges it
    body = options["as"]
    quoted = "'" + body.arg.sval.replace("'", "''") + "'"  # same text, same lines
    try:
        tree = pglast.parse_plpgsql(f"CREATE FUNCTION leaddb_do() RETURNS void LANGUAGE plpgsql AS {quoted}")
    except ParseError:
        return  # the server reports what its PL/pgSQL compiler refuses, when the block runs
    # PL/pgSQL counts lines from the one the body starts on: the line of the opening quote
    start = first_line + text.count("\n", 0, body.arg_location)
    for lineno, kind, query in _plpgsql_statements(tree, 1):
        at = start + lineno - 1
        if kind in ("PLpgSQL_stmt_commit", "PLpgSQL_stmt_rollback"):
            word = kind.removeprefix("PLpgSQL_stmt_").upper()
            yield at, ONE_TRANSACTION, f"{word} inside a DO block, inside the file's transaction"
            continue
        try:
            parsed = pglast.parse_sql(query)
        except ParseError:
            continue
        for raw in parsed:
            for line, rule, what in _node_violations(raw.stmt, at, (query, at), allowed, inner=True):
                yield line, rule, f"{what} (in a DO block)"


def _plpgsql_statements(tree, lineno: int) -> Iterator[tuple[int, str, str]]:
    """(line in the body, statement kind, SQL) for every static statement in a PL/pgSQL tree."""
    if isinstance(tree, list):
        for item in tree:
            yield from _plpgsql_statements(item, lineno)
    elif isinstance(tree, dict):
        lineno = tree.get("lineno", lineno)
        for key, value in tree.items():
            if key in ("PLpgSQL_stmt_commit", "PLpgSQL_stmt_rollback"):
                yield value.get("lineno", lineno), key, ""
            elif key == "PLpgSQL_expr" and value.get("parseMode") == 0:  # a statement, not an expression
                yield lineno, key, value["query"]
            else:
                yield from _plpgsql_statements(value, lineno)
