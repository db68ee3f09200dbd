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
import re
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path, PurePosixPath

from leaddb import compose, paths
from leaddb.errors import MigrationError, MigrationPathUnspecified
from leaddb.spec import MIGRATIONS_HEADING, SPEC_FILENAME, Spec

FILENAME = re.compile(r"^(?P<number>\d{4})_(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")


def _cite(spec: Spec) -> str:
    section = next((s for s in spec.sections if s.heading == MIGRATIONS_HEADING), None)
    where = f"{SPEC_FILENAME}:{section.line}" if section else SPEC_FILENAME
    return f'{where}, section "{MIGRATIONS_HEADING}"'


def resolve_directory(project_dir: Path, spec: Spec | None = None) -> Path:
    """The migrations directory both the spec and the compose mount declare."""
    spec = spec or Spec.load(project_dir / SPEC_FILENAME)
    declared = spec.declarations
    try:
        mount = compose.load_service(project_dir).initdb_mount
    except compose.ComposeError:
        mount = None
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
    if not spec_dir.is_dir():
        raise MigrationPathUnspecified(
            f"the declared migrations directory `{declared[0].path}` does not exist ({cite})",
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

    @property
    def name(self) -> str:
        return self.path.name

    def display(self, project_dir: Path | None = None) -> str:
        return paths.shown(self.path, project_dir)

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
    """Statements with their lines; psql meta-commands are refused up front."""
    from pglast.parser import ParseError, split  # pglast costs ~0.1 s to import: only where it is used

    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("\\"):
            _refuse_meta_command(text, filename, number, line)
    try:
        slices = split(text, with_parser=True, only_slices=True)
    except ParseError as exc:
        message, offset = exc.args[0], exc.args[1] if len(exc.args) > 1 else 0
        lines = text.splitlines()
        line = min(_line_of(text, offset), len(lines))  # at end of input the parser points past the end
        source_line = lines[line - 1] if lines else ""
        raise MigrationError(
            f"{filename}:{line}: syntax error: {message}\n    {source_line.strip()}",
            hint="fix the statement; the file was not applied",
        ) from None
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


def _refuse_meta_command(text: str, filename: str, number: int, line: str) -> None:
    """A line starting with a backslash is a psql meta-command unless it sits inside a
    string or a dollar-quoted body; ask the parser which by parsing the text before it."""
    from pglast.parser import ParseError, split

    before = "\n".join(text.splitlines()[: number - 1])
    try:
        split(before, with_parser=True, only_slices=True)
    except ParseError:
        return  # inside an unfinished statement (a string or a body): not a meta-command
    raise MigrationError(
        f"{filename}:{number}: psql meta-command {line.strip()!r} is not plain SQL",
        hint="migrations are plain SQL, applied the same way by psql and by the runner; "
        "replace the meta-command with SQL",
    )


def discover(directory: Path) -> list[Migration]:
    """Every migration file, ordered by number; anything else in the directory is refused."""
    migrations: list[Migration] = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue
        match = FILENAME.match(path.name)
        if not match or not path.is_file():
            raise MigrationError(
                f"{path.as_posix()}: not a migration file name (expected NNNN_snake_name.sql)",
                hint="rename it, or move it out of the migrations directory: the container "
                "executes every file there",
            )
        migrations.append(Migration(path, int(match["number"]), _read(path)))
    if not migrations:
        raise MigrationError(f"{directory.as_posix()}: no migration files")
    for expected, migration in enumerate(migrations, 1):
        if migration.number != expected:
            others = [m.name for m in migrations if m.number == migration.number]
            problem = (
                f"duplicate number {migration.number:04d}: {', '.join(others)}"
                if len(others) > 1
                else f"expected number {expected:04d}, found {migration.number:04d}"
            )
            raise MigrationError(
                f"{migration.path.as_posix()}: {problem}",
                hint="number migrations contiguously from 0001 in apply order",
            )
    return migrations


def _read(path: Path) -> str:
    data = path.read_bytes()
    where = path.as_posix()
    if data.startswith(b"\xef\xbb\xbf"):
        raise MigrationError(
            f"{where}:1: starts with a UTF-8 byte-order mark", hint="save it as UTF-8 without BOM"
        )
    if b"\r" in data:
        line = data[: data.index(b"\r")].count(b"\n") + 1
        raise MigrationError(
            f"{where}:{line}: CRLF line ending",
            hint="save it with LF endings (.gitattributes enforces eol=lf)",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MigrationError(f"{where}:{line}: not valid UTF-8", hint="save it as UTF-8") from None
    if not text.strip():
        raise MigrationError(f"{where}: empty migration", hint="write its SQL or remove the file")
    return text


def checksum(migrations: list[Migration]) -> str:
    digest = hashlib.sha256()
    for m in migrations:
        digest.update(m.name.encode() + b"\0" + m.text.encode() + b"\0")
    return digest.hexdigest()


def load(project_dir: Path) -> list[Migration]:
    migrations = discover(resolve_directory(project_dir))
    for migration in migrations:
        migration.statements  # noqa: B018 - parse all up front: nothing runs if any file is unreadable
    return migrations
