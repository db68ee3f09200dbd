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
import stat
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cache, cached_property, partial
from pathlib import Path, PurePosixPath

from leaddb import compose, paths, platforms
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
    relative = Path(*declared[0].path.parts)
    if relative.is_absolute() or relative.drive or ".." in relative.parts:
        raise MigrationPathUnspecified(
            f"the declared migrations directory `{declared[0].path}` is outside the project ({cite})",
            hint=hint,
        )
    spec_dir = (project_dir / relative).resolve()
    mount_dir = (project_dir / Path(*PurePosixPath(mount.source).parts)).resolve()
    if spec_dir != mount_dir:
        raise MigrationPathUnspecified(
            f"the spec declares `{declared[0].path}` ({cite}) but {compose.COMPOSE_FILENAME} "
            f"mounts `{mount.source}` at {compose.INITDB_DIR}",
            hint=hint,
        )
    problem = _not_a_directory_of_the_project(project_dir, relative)
    if problem:
        raise MigrationPathUnspecified(
            f"the declared migrations directory `{declared[0].path}` {problem} ({cite})",
            hint=hint,
        )
    return spec_dir


def _not_a_directory_of_the_project(project_dir: Path, relative: Path) -> str | None:
    """Why ``relative`` is not a directory of the project reached without a link, or None. Each
    part is looked at (lstat), from the project down: a link anywhere on the way (the directory
    itself, or ``api`` pointing elsewhere) would read migrations from outside the project."""
    current = project_dir
    for part in relative.parts:
        current = current / part
        try:
            seen = os.lstat(current)
        except FileNotFoundError:
            return "does not exist"
        except OSError as exc:  # a name too long, a directory on the way that cannot be searched
            return f"cannot be read ({exc.strerror})"
        if platforms.is_link(seen):
            where = (
                "is"
                if current == project_dir / relative
                else f"is reached through `{paths.shown(current, project_dir)}`,"
            )
            return f"{where} a symbolic link: the migrations are a directory of the project itself"
        if not stat.S_ISDIR(seen.st_mode):
            return "is not a directory"
    return None


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


class LineIndex:
    """The 1-based line of any offset in one text: the lines' starts found in one pass, each
    lookup a binary search (counting newlines from the start per statement made lint quadratic)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0]
        self.starts.extend(m.end() for m in _LINE_END.finditer(text))

    def line(self, offset: int) -> int:
        return bisect_right(self.starts, offset)

    def __len__(self) -> int:
        """The number of lines (a last line without a newline counts; an empty text has none)."""
        return len(self.starts) - (self.starts[-1] == len(self.text))

    def text_of(self, line: int) -> str:
        end = self.starts[line] - 1 if line < len(self.starts) else len(self.text)
        return self.text[self.starts[line - 1] : end]


_LINE_END = re.compile("\n")


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
    """Statements with their lines; psql meta-commands and variables are refused up front (every
    one of them), then a syntax error (the parser stops at the first), as violations of rule
    "plain SQL". One pass of each: lint time grows with the file, not with its square."""
    from pglast.parser import ParseError, split  # pglast costs ~0.1 s to import: only where it is used

    from leaddb import rules

    lines = LineIndex(text)
    rules.refuse(
        [_not_plain(filename, lines.line(offset), kind, what) for offset, kind, what in psql_scan(text)]
    )
    try:
        slices = split(text, only_slices=True)  # with the parser (the default), not the scanner
    except ParseError as exc:
        message, offset = exc.args  # pglast: the parser's message and the offset it points at
        # at the end of the input it points past the end, or nowhere
        line = max(1, min(lines.line(len(text) if offset is None else offset), len(lines)))
        rules.refuse(
            [
                rules.Violation(
                    filename,
                    line,
                    rules.PLAIN_SQL,
                    # the parser's message quotes the text at the error (all of an unclosed string)
                    f"syntax error: {rules.excerpt(message, 100)}: `{rules.excerpt(lines.text_of(line))}`",
                    "fix the statement",
                )
            ]
        )
    statements = []
    for where in slices:
        start, sql = where.start, text[where]
        # older parsers' locations start at leading comments; the statement starts after them
        skipped = _LEADING_COMMENTS.match(sql).end()
        start += skipped
        sql = sql[skipped:].rstrip().rstrip(";").rstrip()
        statements.append(Statement(sql, lines.line(start), lines.line(start + len(sql))))
    return tuple(statements)


_LEADING_COMMENTS = re.compile(r"(?:\s++|--[^\n]*+|/\*.*?\*/)*+", re.DOTALL)


def _skip_comments(sql: str) -> str:
    return sql[_LEADING_COMMENTS.match(sql).end() :]


# -- what psql reads otherwise than the server: meta-commands and variables ----------------------

_IDENT = "A-Za-z0-9_\x80-\U0010ffff"
# psql's lexer (psqlscan.l), as far as it matters here: the tokens that open a quoted string, a
# quoted identifier, a dollar-quoted body or a comment (inside them nothing is psql's), and
# outside them `::`, a variable (`:name`, `:'name'`, `:"name"`, `:{?name}`) or a backslash
_PSQL_TOKEN = re.compile(
    rf"(?P<estring>(?<![{_IDENT}$])[Ee]')"
    r"|(?P<string>')"
    r'|(?P<identifier>")'
    rf"|(?P<dollar>(?<![{_IDENT}$])\$(?:[A-Za-z_\x80-\U0010ffff][{_IDENT}]*+)?\$)"
    r"|(?P<line_comment>--)"
    r"|(?P<block_comment>/\*)"
    r"|(?P<cast>::)"
    rf"|(?P<variable>:(?:[{_IDENT}]++|'[{_IDENT}]++'|\"[{_IDENT}]++\"|\{{\?[{_IDENT}]++\}}))"
    r"|(?P<backslash>\\)"
)
_ESCAPE_STRING_END = re.compile(r"(?:[^'\\]++|\\.|'')*+'", re.DOTALL)
_COMMENT_MARK = re.compile(r"/\*|\*/")
_META_NAME = re.compile(r"\\(?:[A-Za-z]++\+?|[^\sA-Za-z])?")


def psql_scan(text: str) -> list[tuple[int, str, str]]:
    """(offset, "meta" or "variable", the command's name or the variable) for everything psql
    would read otherwise than the server does, in one pass over the text: a backslash outside
    quotes, bodies and comments starts a meta-command (psql runs it and skips the rest of the
    line), and ``:name`` is a variable psql substitutes. The runner sends the text as it is."""
    found = []
    pos = 0
    while (token := _PSQL_TOKEN.search(text, pos)) is not None:
        kind, pos = token.lastgroup, token.end()
        if kind in ("string", "identifier", "dollar"):  # a doubled quote ends one, opens the next
            pos = _after(text, token.group(), pos)
        elif kind == "estring":  # E'…': backslash escapes too
            closed = _ESCAPE_STRING_END.match(text, pos)
            pos = closed.end() if closed else len(text)
        elif kind == "block_comment":
            pos = _comment_end(text, pos)
        elif kind == "variable":
            found.append((token.start(), kind, token.group()))
        else:  # a line comment, or a meta-command: psql reads the rest of the line as its arguments
            if kind == "backslash":
                found.append((token.start(), "meta", _META_NAME.match(text, token.start()).group()))
            pos = _after(text, "\n", pos)
    return found


def _after(text: str, closing: str, pos: int) -> int:
    """Where ``text`` goes on after the first ``closing`` from ``pos`` (a quote, a body's
    dollar tag, a line's end); its end when there is none."""
    found = text.find(closing, pos)
    return len(text) if found == -1 else found + len(closing)


def _comment_end(text: str, pos: int) -> int:
    """Where a block comment opened before ``pos`` ends: they nest."""
    depth = 1
    while (mark := _COMMENT_MARK.search(text, pos)) is not None:
        pos = mark.end()
        depth += 1 if mark.group() == "/*" else -1
        if depth == 0:
            return pos
    return len(text)


def _not_plain(filename: str, line: int, kind: str, what: str):
    from leaddb import rules

    if kind == "meta":
        return rules.Violation(
            filename,
            line,
            rules.PLAIN_SQL,
            f"psql meta-command `{rules.excerpt(what, 20)}` is not plain SQL",
            "replace the meta-command with SQL: migrations are plain SQL, applied the same way by psql "
            "and by the runner",
        )
    return rules.Violation(
        filename,
        line,
        rules.PLAIN_SQL,
        f"psql variable `{rules.excerpt(what, 40)}` is not plain SQL: psql would substitute it, "
        "the runner not",
        "write the value itself; where a colon must be followed by a name (an array slice), put a space "
        "after the colon",
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


def _present(directory: Path, name: str) -> bool:
    """Whether ``directory`` may hold an entry ``name``: False only when it surely does not. A
    directory that cannot be searched (its own rule refuses it) does not make every file missing."""
    try:
        os.lstat(directory / name)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def load(project_dir: Path) -> list[Migration]:
    """The declared directory's migrations, every file held to every rule of the spec's
    "Migrations: directory and tooling" first: nothing runs unless all of them pass."""
    from leaddb import lint, rules

    spec = Spec.load(project_dir / SPEC_FILENAME)
    directory = resolve_directory(project_dir, spec)  # MIGRATION_PATH_UNSPECIFIED before any rule
    found, violations = _scan(directory, project_dir.resolve())
    declared = spec.declarations[0].path.as_posix()
    present = partial(_present, directory)
    violations += rules.check_printed(found, spec.blocks_of("migration"), declared, present)
    violations += rules.check_files(found, declared, lint.allowed_objects(spec))
    rules.refuse(violations)
    return found
