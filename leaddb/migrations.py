"""Find, order, read and split the migration files.

The directory is resolved from two declarations that must agree: the spec's
``Migrations directory:`` line and the compose mount at ``/docker-entrypoint-initdb.d``.
Statements are located with pglast (PostgreSQL's own parser), so an error names the
file, the line and the whole statement. Locating them asks the parser for the statements'
boundaries only (``pglast.parser.split``): building Python parse trees of every statement
costs fifty times more (about 1 ms a file) and nothing on the way to the server needs them.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path, PurePosixPath

from leaddb import compose, paths
from leaddb.errors import MigrationPathUnspecified, file_error
from leaddb.spec import MIGRATIONS_HEADING, SPEC_FILENAME, Spec

# the file rules (naming, text, header, one transaction, ...) are leaddb.rules, imported where they
# are used: it needs pglast, which this module keeps off the import path of tasks that never parse


def _cite(spec: Spec) -> str:
    section = next((s for s in spec.sections if s.heading == MIGRATIONS_HEADING), None)
    where = f"{SPEC_FILENAME}:{section.line}" if section else SPEC_FILENAME
    return f'{where}, section "{MIGRATIONS_HEADING}"'


def resolve_directory(project_dir: Path, spec: Spec | None = None) -> Path:
    """The migrations directory both the spec and the compose mount declare."""
    spec = spec or Spec.load(project_dir / SPEC_FILENAME)
    declared = spec.declarations
    # a missing compose file mounts nothing; an unreadable one is its own error, with its line
    compose_file = project_dir / compose.COMPOSE_FILENAME
    mount = compose.load_service(project_dir).initdb_mount if os.path.lexists(compose_file) else None
    cite = _cite(spec)
    hint = (
        f'declare it once in the spec ("- Migrations directory: `api/db/migrations`" under '
        f'"## {MIGRATIONS_HEADING}") and mount the same directory read-only at '
        f"{compose.INITDB_DIR} in {compose.COMPOSE_FILENAME}"
    )
    problems = []
    if not declared:
        problems.append(f"the spec does not declare the migrations directory ({cite})")
    elif len({d.path for d in declared}) > 1:
        lines = ", ".join(f"`{d.path}` at line {d.line}" for d in declared)
        problems.append(f"the spec declares contradicting migrations directories: {lines} ({cite})")
    if mount is None:
        problems.append(
            f"{compose.COMPOSE_FILENAME} mounts nothing at {compose.INITDB_DIR} in service "
            f"{compose.SERVICE!r}"
        )
    if problems:
        raise MigrationPathUnspecified("; ".join(problems), hint=hint)
    spec_dir = (project_dir / Path(*declared[0].path.parts)).resolve()
    mount_dir = (project_dir / Path(*PurePosixPath(mount.source).parts)).resolve()
    if spec_dir != mount_dir:
        raise MigrationPathUnspecified(
            f"the spec declares `{declared[0].path}` ({cite}) but {compose.COMPOSE_FILENAME} "
            f"mounts `{mount.source}` at {compose.INITDB_DIR}",
            hint=hint,
        )
    try:  # a name too long, a loop of links: OSError from the checks themselves
        problem = (
            None if spec_dir.is_dir() else "is not a directory" if spec_dir.exists() else "does not exist"
        )
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror})"
    if problem:
        raise MigrationPathUnspecified(
            f"the declared migrations directory `{declared[0].path}` {problem} ({cite})",
            hint=hint,
        )
    return spec_dir


@dataclass(frozen=True)
class Statement:
    sql: str
    line: int  # 1-based line where the statement starts
    end_line: int


@dataclass(frozen=True)
class Migration:
    path: Path
    number: int
    text: str
    root: Path | None = field(default=None, compare=False, repr=False)  # the project: names it relative

    @property
    def name(self) -> str:
        return self.path.name

    def display(self, project_dir: Path | None = None) -> str:
        return paths.shown(self.path, project_dir or self.root)

    @cached_property
    def statements(self) -> tuple[Statement, ...]:
        return split_statements(self.text, self.display())

    @cached_property
    def single_transaction(self) -> bool:
        """Whether psql runs the file as one transaction: ``BEGIN`` (or ``START TRANSACTION``)
        first, ``COMMIT`` (or ``END``, not ``AND CHAIN``) last, and nothing between them that
        ends or opens a transaction (savepoints stay inside it). Such a file leaves nothing
        behind when any statement fails, and no transaction open when it succeeds."""
        if len(self.statements) < 2:
            return False
        kinds = [transaction_control(s) for s in self.statements]
        return (
            kinds[0] in ("begin", "start")
            and kinds[-1] == "commit"
            and all(k in (None, "savepoint", "release", "rollback_to") for k in kinds[1:-1])
        )


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


# the first word of every statement that can begin, end or mark a transaction
_TRANSACTION_WORDS = frozenset(
    {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "PREPARE"}
)
_FIRST_WORD = re.compile(r"[A-Za-z]+")


def transaction_control(statement: Statement) -> str | None:
    """The kind of a transaction-control statement ("begin", "commit", "savepoint", ...;
    "commit_chain" for ``COMMIT AND CHAIN``), None for any other statement. Only the few
    statements whose first word can start one are parsed."""
    word = _FIRST_WORD.match(statement.sql)  # COMMIT/* a comment */ is COMMIT too
    if not word or word[0].upper() not in _TRANSACTION_WORDS:
        return None
    return _transaction_kind(statement.sql)


@cache  # the same few spellings (BEGIN, COMMIT) in every file
def _transaction_kind(sql: str) -> str | None:
    from pglast import ast, enums, parse_sql

    node = parse_sql(sql)[0].stmt
    if not isinstance(node, ast.TransactionStmt):
        return None  # PREPARE name AS ...
    kind = enums.TransactionStmtKind(node.kind).name.removeprefix("TRANS_STMT_").lower()
    return f"{kind}_chain" if getattr(node, "chain", False) else kind


def split_statements(text: str, filename: str) -> tuple[Statement, ...]:
    """Statements with their lines; psql meta-commands are refused up front (every one of them),
    then a syntax error (the parser stops at the first), as violations of rule "plain SQL"."""
    from pglast.parser import ParseError, split  # pglast costs ~0.1 s to import: only where it is used

    from leaddb import rules

    meta, before = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("\\") and _outside_statements("\n".join(before)):
            meta.append(_meta_command(filename, number, line))
            line = ""  # psql consumes it: the SQL after it reads on without it
        before.append(line)
    rules.refuse(meta)
    try:
        slices = split(text, with_parser=True, only_slices=True)
    except ParseError as exc:
        message, offset = exc.args  # pglast: the parser's message and the offset it points at
        lines = text.splitlines()
        line = min(_line_of(text, offset), len(lines))  # at end of input the parser points past the end
        source_line = lines[line - 1].strip()
        rules.refuse(
            [
                rules.Violation(
                    filename,
                    line,
                    rules.PLAIN_SQL,
                    f"syntax error: {message}: `{source_line}`",
                    "fix the statement",
                )
            ]
        )
    statements = []
    for where in slices:
        start, sql = where.start, text[where]
        # older parsers' locations start at leading comments; the statement starts after them
        stripped = _skip_comments(sql)
        start += len(sql) - len(stripped)
        sql = stripped.rstrip().rstrip(";").rstrip()
        statements.append(Statement(sql, _line_of(text, start), _line_of(text, start + len(sql))))
    return tuple(statements)


def _skip_comments(sql: str) -> str:
    while True:
        sql = sql.lstrip()
        if sql.startswith("--"):
            sql = sql.split("\n", 1)[1] if "\n" in sql else ""
        elif sql.startswith("/*") and "*/" in sql:
            sql = sql.split("*/", 1)[1]
        else:
            return sql


def _outside_statements(before: str) -> bool:
    """A line starting with a backslash is a psql meta-command unless it sits inside a string
    or a dollar-quoted body; ask the parser which by parsing the text before it."""
    from pglast.parser import ParseError, split

    try:
        split(before, with_parser=True, only_slices=True)
    except ParseError:
        return False  # inside an unfinished statement (a string or a body): not a meta-command
    return True


def _meta_command(filename: str, number: int, line: str):
    from leaddb import rules

    return rules.Violation(
        filename,
        number,
        rules.PLAIN_SQL,
        f"psql meta-command {line.strip()!r} is not plain SQL",
        "replace the meta-command with SQL: migrations are plain SQL, applied the same way by psql "
        "and by the runner",
    )


def _scan(directory: Path, root: Path | None) -> tuple[list[Migration], list]:
    from leaddb import rules

    def display(path: Path) -> str:
        return paths.shown(path, root)

    try:
        files, violations = rules.scan(directory, display)
    except OSError as exc:  # a directory or a file the user may not read: theirs to fix, not a bug
        where = display(Path(exc.filename)) if exc.filename else display(directory)
        raise file_error(exc, "read", where) from None
    return [Migration(path, number, text, root) for path, number, text in files], violations


def discover(directory: Path) -> list[Migration]:
    """Every migration file, ordered by number, held to the naming and text rules (all of them
    reported at once); anything else in the directory is refused."""
    from leaddb import rules

    found, violations = _scan(directory, None)
    rules.refuse(violations)
    return found


def checksum(migrations: list[Migration]) -> str:
    digest = hashlib.sha256()
    for m in migrations:
        digest.update(m.name.encode() + b"\0" + m.text.encode() + b"\0")
    return digest.hexdigest()


def load(project_dir: Path) -> list[Migration]:
    """The declared directory's migrations, every file held to every rule of the spec's
    "Migrations: directory and tooling" first: nothing runs unless all of them pass."""
    from leaddb import lint, rules

    spec = Spec.load(project_dir / SPEC_FILENAME)
    directory = resolve_directory(project_dir, spec)  # MIGRATION_PATH_UNSPECIFIED before any rule
    found, violations = _scan(directory, project_dir.resolve())
    declared = spec.declarations[0].path.as_posix()
    violations += rules.check_files(found, declared, lint.allowed_objects(spec))
    rules.refuse(violations)
    return found
