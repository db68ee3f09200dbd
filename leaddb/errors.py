"""Every expected failure, with the exit code the tasks map it to.

A coded failure's message starts with its code and a colon, so scripts can match
on the first word and people read the rest. Tasks turn these into ``Exit`` without
a traceback (``leaddb.cli.boundary``); anything else is a bug, reported as one, with its
traceback written to a file.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_MIGRATION_PATH_UNSPECIFIED = 2
EXIT_SCHEMA_DRIFT = 3
EXIT_NON_IDEMPOTENT_MIGRATION = 4
EXIT_BENCHMARK_TARGET_MISSED = 5
EXIT_MIGRATIONS_PENDING = 6
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


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


class BackendError(LeadDbError):
    """A server could not be created, booted, reached or removed."""


class OptionError(LeadDbError):
    """A flag, or the configuration or environment variable standing in for it, is unusable;
    found before the task does anything."""


class Interrupted(LeadDbError):
    """Ctrl-C (KeyboardInterrupt): what state the task left, and the next step."""

    exit_code = EXIT_INTERRUPTED


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
