"""Every expected failure, with the exit code the tasks map it to.

A coded failure's message starts with its code and a colon, so scripts can match
on the first word and people read the rest. Tasks turn these into ``Exit`` without
a traceback (``leaddb.cli.boundary``); anything else is a bug, reported as one, with its
traceback written to a file.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_MIGRATION_PATH_UNSPECIFIED = 2
EXIT_SCHEMA_DRIFT = 3
EXIT_NON_IDEMPOTENT_MIGRATION = 4
EXIT_BENCHMARK_TARGET_MISSED = 5
EXIT_MIGRATIONS_PENDING = 6
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
# Stopped by another signal that asks a program to stop: 128 + its number, as shells report a
# program the signal ended (SIGHUP 129, SIGTERM 143; Windows' SIGBREAK, from Ctrl-Break or the
# console window closing, 149)
EXIT_SIGNAL_BASE = 128


class LeadDbError(Exception):
    """An expected failure: one clear message, the object, the file and line, the next step."""

    code: str | None = None
    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.detail = message
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.code}: {self.detail}" if self.code else self.detail
        return f"{head}\n  next step: {self.hint}" if self.hint else head


class ComposeError(LeadDbError):
    """``docker-compose.yml`` or ``.env`` cannot be read as Compose reads it (``leaddb/compose.py``,
    ``leaddb/interpolation.py``): one message naming the file and line."""


class MigrationPathUnspecified(LeadDbError):
    code = "MIGRATION_PATH_UNSPECIFIED"
    exit_code = EXIT_MIGRATION_PATH_UNSPECIFIED


class SchemaDrift(LeadDbError):
    code = "SCHEMA_DRIFT"
    exit_code = EXIT_SCHEMA_DRIFT


class NonIdempotentMigration(LeadDbError):
    code = "NON_IDEMPOTENT_MIGRATION"
    exit_code = EXIT_NON_IDEMPOTENT_MIGRATION


class BenchmarkTargetMissed(LeadDbError):
    code = "BENCHMARK_TARGET_MISSED"
    exit_code = EXIT_BENCHMARK_TARGET_MISSED


class MigrationsPending(LeadDbError):
    """A migration file is not (or not wholly) on the database: ``db.status`` names it."""

    code = "MIGRATIONS_PENDING"
    exit_code = EXIT_MIGRATIONS_PENDING


class SpecError(LeadDbError):
    """The spec cannot be read as the tooling needs it (a malformed block, a missing file)."""


class MigrationError(LeadDbError):
    """A migration failed on first apply (not an idempotency problem)."""


class WaitTimeout(LeadDbError):
    """A statement waited for another session's lock, or ran, longer than its limit
    (``--lock-timeout``, ``--statement-timeout``): cancelled, its transaction rolled back."""


class BackendError(LeadDbError):
    """A server could not be created, booted, reached or removed."""


class OptionError(LeadDbError):
    """A flag, or the configuration or environment variable standing in for it, is unusable;
    found before the task does anything."""


class Interrupted(LeadDbError):
    """Ctrl-C (KeyboardInterrupt), or a signal that asks the task to stop (``Stopped``): what
    state the task left, and the next step."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None) -> None:
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(message, hint=hint)


class Stopped(KeyboardInterrupt):
    """SIGTERM, SIGHUP (Windows: SIGBREAK) while a task runs: raised where the task is, as Ctrl-C's
    KeyboardInterrupt is, so the same clean-up runs (psycopg cancels a statement in progress on any
    KeyboardInterrupt, and so does the runner); ``leaddb.cli`` installs the handler."""

    def __init__(self, signal_name: str, number: int) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.number = number

    @property
    def exit_code(self) -> int:
        return EXIT_SIGNAL_BASE + self.number


class FileError(LeadDbError):
    """A file or directory the task reads or writes cannot be: permissions, a full or read-only
    disk, a name that is not what it should be. The user's environment, not a bug."""


# the next step for the usual reasons a file cannot be read or written
_FILE_HINTS = {
    errno.EACCES: "check its permissions (and those of the directories above it) for the user you run as",
    errno.EPERM: "check its permissions (and those of the directories above it) for the user you run as",
    errno.EROFS: "the file system is read-only: use a writable copy of the checkout, or point the task "
    "at a writable location",
    errno.ENOSPC: "the disk is full: free some space, or point the task at another disk",
    errno.EDQUOT: "your disk quota is used up: free some space, or point the task at another disk",
    errno.ENOENT: "check that the path exists",
    errno.ENOTDIR: "a file stands where a directory should be: check the path",
    errno.EISDIR: "a directory stands where a file should be: check the path",
}


def file_error(exc: OSError, doing: str, shown: str | None = None) -> FileError:
    """One message for an ``OSError`` while the task reads or writes a file: ``doing`` says what
    (e.g. "write the status to"), ``shown`` the path as the user knows it (default: the one the
    error names)."""
    where = shown or exc.filename
    reason = exc.strerror or str(exc) or type(exc).__name__
    if where is None:  # no file named: a socket, a pipe, the operating system refusing something
        return FileError(
            f"{type(exc).__name__}: {reason}",
            hint="the operating system refused what the task asked for; see the reason, then run it again",
        )
    hint = _FILE_HINTS.get(exc.errno or 0, "check the path, its permissions and the disk")
    return FileError(f"cannot {doing} {where}: {reason}", hint=hint)


@contextmanager
def file_errors(doing: str, shown: str | None = None) -> Iterator[None]:
    """Around reading or writing one file: an ``OSError`` becomes :func:`file_error`'s message."""
    try:
        yield
    except OSError as exc:
        raise file_error(exc, doing, shown) from None


def excerpt(text: str, limit: int = 60) -> str:
    """What a message quotes of a file: the first line of ``text``, cut to ``limit`` characters
    (`` …`` when something was left out), anything unprintable shown as ``?``. A message quotes
    no more of a file than this: the file may hold anything, and messages end up in CI logs."""
    first, newline, _ = text.strip().partition("\n")
    first = first.strip()
    cut = len(first) > limit
    if cut:
        first = first[: limit - 2].rstrip()
    first = "".join(c if c.isprintable() else "?" for c in first)
    return first + " …" if cut or newline else first
