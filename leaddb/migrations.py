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
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path, PurePosixPath

from leaddb import compose, paths, platforms
from leaddb.errors import MigrationPathUnspecified, excerpt, file_error
from leaddb.spec import MIGRATIONS_HEADING, SPEC_FILENAME, Spec
from leaddb.violations import NAMING, PLAIN_SQL, TEXT, Violation, refuse

# the rules that judge what is read here (header, one transaction, ...) are leaddb.rules, which
# needs pglast; leaddb.verdict asks them, or finds their verdict on the same files cached


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

    lines = LineIndex(text)
    refuse([_not_plain(filename, lines.line(offset), kind, what) for offset, kind, what in psql_scan(text)])
    try:
        slices = split(text, only_slices=True)  # with the parser (the default), not the scanner
    except ParseError as exc:
        message, offset = exc.args  # pglast: the parser's message and the offset it points at
        # at the end of the input it points past the end, or nowhere
        line = max(1, min(lines.line(len(text) if offset is None else offset), len(lines)))
        refuse(
            [
                Violation(
                    filename,
                    line,
                    PLAIN_SQL,
                    # the parser's message quotes the text at the error (all of an unclosed string)
                    f"syntax error: {excerpt(message, 100)}: `{excerpt(lines.text_of(line))}`",
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

# An identifier's characters: A-Za-z0-9_ and every non-ASCII character, written as what they are
# not (ASCII ranges only): the class spelled with \x80-\U0010ffff costs re's compiler a loop over
# 65,536 code points per use, 50 ms of every command's start-up (tests/unit/test_migrations.py
# holds each form equal to the spelled-out one: every ASCII character, the boundaries above)
IDENT_CHAR = r"[^\x00-/:-@\[-^`{-\x7f]"
IDENT_START = r"[^\x00-@\[-^`{-\x7f]"  # not a digit
IDENT_OR_DOLLAR = r"[^\x00-#%-/:-@\[-^`{-\x7f]"
# psql's lexer (psqlscan.l), as far as it matters here: the tokens that open a quoted string, a
# quoted identifier, a dollar-quoted body or a comment (inside them nothing is psql's), and
# outside them `::`, a variable (`:name`, `:'name'`, `:"name"`, `:{?name}`) or a backslash
_PSQL_TOKEN = re.compile(
    rf"(?P<estring>(?<!{IDENT_OR_DOLLAR})[Ee]')"
    r"|(?P<string>')"
    r'|(?P<identifier>")'
    rf"|(?P<dollar>(?<!{IDENT_OR_DOLLAR})\$(?:{IDENT_START}{IDENT_CHAR}*+)?\$)"
    r"|(?P<line_comment>--)"
    r"|(?P<block_comment>/\*)"
    r"|(?P<cast>::)"
    rf"|(?P<variable>:(?:{IDENT_CHAR}++|'{IDENT_CHAR}++'|\"{IDENT_CHAR}++\"|\{{\?{IDENT_CHAR}++\}}))"
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
    if kind == "meta":
        return Violation(
            filename,
            line,
            PLAIN_SQL,
            f"psql meta-command `{excerpt(what, 20)}` is not plain SQL",
            "replace the meta-command with SQL: migrations are plain SQL, applied the same way by psql "
            "and by the runner",
        )
    return Violation(
        filename,
        line,
        PLAIN_SQL,
        f"psql variable `{excerpt(what, 40)}` is not plain SQL: psql would substitute it, the runner not",
        "write the value itself; where a colon must be followed by a name (an array slice), put a space "
        "after the colon",
    )


# -- reading the directory: the rules "naming" and "text" ------------------------------------

# the spec's pattern; fullmatch, and [0-9] rather than \d, which also matches other scripts' digits
FILENAME = re.compile(r"(?P<number>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql")

BOM = b"\xef\xbb\xbf"
# what no SQL text needs and a hostile one uses: control characters but tab and line ends (NUL: the
# parser would stop reading there; ESC: terminal escapes in CI logs), zero-width and bidirectional
# controls (text shown in another order than it runs)
_HIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


# -- naming -------------------------------------------------------------------------------------


def scan(
    directory: Path, display: Callable[[Path], str], listed: list[str] | None = None
) -> tuple[list[tuple[Path, int, str]], list[Violation]]:
    """The migration files (path, number, text) in apply order, and every naming and text violation.

    Hidden files are left alone, as the image's entrypoint leaves them (``*`` skips them). A file
    with a migration's name is read only when it is a regular file of the directory itself
    (:class:`_Directory`): never through a link, never a FIFO or device, never one with another
    name elsewhere (a hard link), never more than :data:`MAX_FILE_BYTES`. ``listed``, when given,
    receives every name the directory holds."""
    violations: list[Violation] = []
    numbered: list[tuple[str, int]] = []  # every migration name, whatever the entry is: the numbering's
    named: list[tuple[Path, int, os.stat_result]] = []  # the regular files among them: read
    try:
        folder = _Directory(directory)
    except OSError as exc:
        what = f"cannot be read: {exc.strerror or exc}"
        return [], [Violation(display(directory), 0, NAMING, what, _UNREADABLE)]
    with folder:
        names = folder.names()
        if listed is not None:
            listed.extend(names)  # every entry, hidden ones too: what the verdict's key covers
        for name in names:
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


@dataclass(frozen=True)
class Reading:
    """What :func:`read` found: the files (read, in order), the naming and text violations, and
    every name the directory holds."""

    migrations: list[Migration]
    violations: list[Violation]
    names: tuple[str, ...]


def read(directory: Path, root: Path | None) -> Reading:
    """The one place the migrations directory is listed and its files read (:func:`scan`)."""
    listed: list[str] = []
    found, violations = _scan(directory, root, listed)
    return Reading(found, violations, tuple(listed))


def _scan(
    directory: Path, root: Path | None, listed: list[str] | None = None
) -> tuple[list[Migration], list]:
    def display(path: Path) -> str:
        return paths.shown(path, root)

    try:
        files, violations = scan(directory, display, listed)
    except OSError as exc:  # a directory or a file the user may not read: theirs to fix, not a bug
        where = display(Path(exc.filename)) if exc.filename else display(directory)
        raise file_error(exc, "read", where) from None
    return [Migration(path, number, text, root) for path, number, text in files], violations


def discover(directory: Path) -> list[Migration]:
    """Every migration file, ordered by number, held to the naming and text rules (all of them
    reported at once); anything else in the directory is refused."""
    found, violations = _scan(directory, None)
    refuse(violations)
    return found


def checksum(migrations: list[Migration]) -> str:
    digest = hashlib.sha256()
    for m in migrations:
        digest.update(m.name.encode() + b"\0" + m.text.encode() + b"\0")
    return digest.hexdigest()


def present(directory: Path, name: str) -> bool:
    """Whether ``directory`` may hold an entry ``name``: False only when it surely does not. A
    directory that cannot be searched (its own rule refuses it) does not make every file missing."""
    try:
        os.lstat(directory / name)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True
