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

import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path, PurePosixPath

import pglast
from pglast import ast
from pglast.enums import (
    DiscardMode,
    ObjectType,
    TransactionStmtKind,
)
from pglast.parser import ParseError

from leaddb import lint, platforms, scope
from leaddb.errors import MigrationError, excerpt
from leaddb.migrations import LineIndex
from leaddb.spec import MIGRATIONS_HEADING, SPEC_FILENAME

NAMING = "naming"
TEXT = "text"
HEADER = "header"
ONE_TRANSACTION = "one transaction"
NOT_DESTRUCTIVE = "not destructive"
NO_LOGIC = "no logic"
PLAIN_SQL = "plain SQL"
SCHEMA_ONLY = "schema only"
PRINTED = "printed in the spec"

# the longest description a violation prints (a few names, a short excerpt)
MAX_WHAT = 400

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
    SCHEMA_ONLY: "migrations hold this schema's objects only: no roles or grants, no commands on the "
    "database, the server or the session, no server functions, no locks, no dynamic SQL",
    PRINTED: "print the file's SQL in the spec's section \"Migrations\" first (a ```sql block whose first "
    "line is `-- migration: <file>`), then copy it byte for byte into the file",
}

# the spec's pattern; fullmatch, and [0-9] rather than \d, which also matches other scripts' digits
FILENAME = re.compile(r"(?P<number>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql")

BOM = b"\xef\xbb\xbf"
# what no SQL text needs and a hostile one uses: control characters but tab and line ends (NUL: the
# parser would stop reading there; ESC: terminal escapes in CI logs), zero-width and bidirectional
# controls (text shown in another order than it runs)
_HIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


@dataclass(frozen=True, order=True)
class Violation:
    file: str
    line: int  # 1-based; 0 when the file as a whole breaks the rule (its name, its number)
    rule: str
    what: str
    fix: str = field(default="", compare=False)

    def describe(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        # every rule quotes what it needs only; this bounds it all the same
        return f'{excerpt(where, 300)}: rule "{self.rule}": {excerpt(self.what, MAX_WHAT)}'

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

    Hidden files are left alone, as the image's entrypoint leaves them (``*`` skips them). A file
    with a migration's name is read only when it is a regular file of the directory itself
    (:class:`_Directory`): never through a link, never a FIFO or device, never one with another
    name elsewhere (a hard link), never more than :data:`MAX_FILE_BYTES`."""
    violations: list[Violation] = []
    numbered: list[tuple[str, int]] = []  # every migration name, whatever the entry is: the numbering's
    named: list[tuple[Path, int, os.stat_result]] = []  # the regular files among them: read
    try:
        folder = _Directory(directory)
    except OSError as exc:
        what = f"cannot be read: {exc.strerror or exc}"
        return [], [Violation(display(directory), 0, NAMING, what, _UNREADABLE)]
    with folder:
        for name in folder.names():
            if name.startswith("."):
                continue
            path = directory / name
            match = FILENAME.fullmatch(name)
            if not match:
                violations.append(
                    Violation(
                        display(path),
                        0,
                        NAMING,
                        "not a migration file name (expected NNNN_snake_name.sql, "
                        "^[0-9]{4}_[a-z0-9_]+\\.sql$)",
                        "rename it, or move it out of the migrations directory: the container executes "
                        "every file there",
                    )
                )
                continue
            numbered.append((display(path), int(match["number"])))
            try:
                seen = folder.lstat(name)
            except OSError as exc:
                violations.append(
                    Violation(display(path), 0, NAMING, f"cannot be read: {exc.strerror or exc}", _UNREADABLE)
                )
                continue
            problem = _not_a_file_of_its_own(seen)
            if problem:
                what, fix = problem
                violations.append(Violation(display(path), 0, NAMING, what, fix))
            else:
                named.append((path, int(match["number"]), seen))
        if not named and not violations:
            violations.append(
                Violation(
                    display(directory), 0, NAMING, "no migration files", "write the first one, 0001_….sql"
                )
            )
        violations += numbering(numbered)
        files = []
        for path, number, seen in named:
            data = folder.read(path.name, seen)
            if isinstance(data, str):
                violations.append(Violation(display(path), 0, NAMING, data, _UNREADABLE))
                continue
            text, found = check_text(display(path), data)
            violations += found
            if text is not None:
                files.append((path, number, text))
    return files, violations


# the most a migration file may hold: a schema of thousands of tables is far less; more is not one
MAX_FILE_BYTES = 16 << 20
_UNREADABLE = (
    "check its permissions (and those of the directories above it) for the user you run as, "
    "or restore it (git checkout -- FILE restores a committed one)"
)


def _not_a_file_of_its_own(seen: os.stat_result) -> tuple[str, str] | None:
    """Why ``lstat`` says this entry is not a migration file of the directory, with the fix."""
    if platforms.is_link(seen):
        return (
            "is a symbolic link: a migration file is a regular file of the directory itself, never "
            "read through a link",
            "replace the link with the file itself, or remove it",
        )
    if not stat.S_ISREG(seen.st_mode):
        kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket"}
        kind = next((k for test, k in kinds.items() if test(seen.st_mode)), "a device or other special file")
        return f"not a regular file ({kind})", "move it out of the migrations directory"
    if seen.st_nlink > 1:
        return (
            f"has {seen.st_nlink} hard links: a migration file has no other name, through which it "
            "could be changed from outside the directory",
            "replace it with a copy of its own (copy it to a new name, then rename that over it)",
        )
    if seen.st_size > MAX_FILE_BYTES:
        return (
            f"is {seen.st_size} bytes, more than a migration file may hold ({MAX_FILE_BYTES} bytes)",
            "split the schema into smaller files",
        )
    return None


class _Directory:
    """The migrations directory, listed and read without following links. Where the platform
    has directory descriptors (POSIX), the directory is opened once (``O_NOFOLLOW``) and every
    file is opened relative to it, ``O_NOFOLLOW``; elsewhere by path. Either way a file is read
    only when ``fstat`` of what was opened is the regular file ``lstat`` saw: nothing swapped
    in between is followed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, platforms.DIRECTORY_READ) if platforms.DIRECTORY_READ else None

    def __enter__(self) -> _Directory:
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)

    def names(self) -> list[str]:
        return sorted(os.listdir(self.path if self.fd is None else self.fd))

    def lstat(self, name: str) -> os.stat_result:
        return os.lstat(self.path / name) if self.fd is None else os.lstat(name, dir_fd=self.fd)

    def read(self, name: str, seen: os.stat_result) -> bytes | str:
        """The file's bytes, or why they were not read."""
        try:
            if self.fd is None:
                fd = os.open(self.path / name, platforms.NOFOLLOW_READ)
            else:
                fd = os.open(name, platforms.NOFOLLOW_READ, dir_fd=self.fd)
        except OSError as exc:  # ELOOP: a link put there since lstat
            return f"cannot be read: {exc.strerror or exc}"
        with os.fdopen(fd, "rb") as f:
            opened = os.fstat(f.fileno())
            if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
                seen.st_dev,
                seen.st_ino,
            ):
                return "was replaced while it was read: read nothing of it"
            try:
                data = f.read(MAX_FILE_BYTES + 1)
            except OSError as exc:
                return f"cannot be read: {exc.strerror or exc}"
        if len(data) > MAX_FILE_BYTES:
            return f"grew past what a migration file may hold ({MAX_FILE_BYTES} bytes) while it was read"
        return data


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
    hidden = _HIDDEN.search(text)
    if hidden:  # binary, a terminal escape, text that reads otherwise than it runs: read no further
        line = text.count("\n", 0, hidden.start()) + 1
        char = hidden.group()
        kind = (
            "a control character"
            if unicodedata.category(char) == "Cc"
            else "an invisible or bidirectional control character"
        )
        return None, [
            *violations,
            Violation(
                file,
                line,
                TEXT,
                f"{kind} (U+{ord(char):04X}): not plain text",
                "remove it: a migration is plain text",
            ),
        ]
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
