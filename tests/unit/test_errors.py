"""Every expected failure's exit code and one-message rendering (README "Exit codes")."""

from __future__ import annotations

import pytest

from leaddb import errors
from leaddb.rules import RulesBroken, Violation


@pytest.mark.parametrize(
    ("error", "code", "exit_code"),
    [
        (errors.LeadDbError, None, 1),
        (errors.MigrationPathUnspecified, "MIGRATION_PATH_UNSPECIFIED", 2),
        (errors.SchemaDrift, "SCHEMA_DRIFT", 3),
        (errors.NonIdempotentMigration, "NON_IDEMPOTENT_MIGRATION", 4),
        (errors.BenchmarkTargetMissed, "BENCHMARK_TARGET_MISSED", 5),
        (errors.SpecError, None, 1),
        (errors.MigrationError, None, 1),
        (errors.BackendError, None, 1),
        (errors.OptionError, None, 1),
        (errors.Interrupted, None, 130),
    ],
)
def test_codes_and_exit_codes(error, code, exit_code):
    assert (error.code, error.exit_code) == (code, exit_code)
    assert issubclass(error, errors.LeadDbError)


def test_the_documented_exit_codes():
    assert (
        errors.EXIT_OK,
        errors.EXIT_FAILURE,
        errors.EXIT_MIGRATION_PATH_UNSPECIFIED,
        errors.EXIT_SCHEMA_DRIFT,
        errors.EXIT_NON_IDEMPOTENT_MIGRATION,
        errors.EXIT_BENCHMARK_TARGET_MISSED,
        errors.EXIT_INTERRUPTED,
    ) == (0, 1, 2, 3, 4, 5, 130)


def test_a_coded_message_starts_with_its_code_then_the_next_step():
    error = errors.SchemaDrift("1 difference(s)", hint="run db.dump")
    assert str(error) == "SCHEMA_DRIFT: 1 difference(s)\n  next step: run db.dump"
    assert (error.detail, error.hint) == ("1 difference(s)", "run db.dump")
    assert error.render() == str(error)


def test_an_uncoded_message_without_a_next_step_is_the_message_alone():
    error = errors.BackendError("the server did not start")
    assert str(error) == "the server did not start"
    assert error.hint is None


def test_a_rules_violation_is_a_migration_error_exiting_1():
    error = RulesBroken([Violation("f.sql", 1, "header", "x")])
    assert isinstance(error, errors.MigrationError) and error.exit_code == errors.EXIT_FAILURE
    assert error.code is None


@pytest.mark.parametrize(
    ("exc", "shown", "message", "hint"),
    [
        (
            PermissionError(13, "Permission denied", "/x/status.json"),
            None,  # the path the error names
            "cannot write the status to /x/status.json: Permission denied",
            "check its permissions (and those of the directories above it) for the user you run as",
        ),
        (
            PermissionError(13, "Permission denied", "/x/status.json"),
            "status.json",  # the path as the user gave it
            "cannot write the status to status.json: Permission denied",
            "check its permissions (and those of the directories above it) for the user you run as",
        ),
        (  # an errno without a hint of its own, or none at all: the general next step
            OSError(5, "Input/output error", "/x/status.json"),
            None,
            "cannot write the status to /x/status.json: Input/output error",
            "check the path, its permissions and the disk",
        ),
        (
            OSError("the file changed while it was read"),
            "status.json",
            "cannot write the status to status.json: the file changed while it was read",
            "check the path, its permissions and the disk",
        ),
        (
            OSError(),  # no reason given: the exception's kind stands for it
            "status.json",
            "cannot write the status to status.json: OSError",
            "check the path, its permissions and the disk",
        ),
        (  # no file named: a socket, a pipe
            BrokenPipeError(32, "Broken pipe"),
            None,
            "BrokenPipeError: Broken pipe",
            "the operating system refused what the task asked for; see the reason, then run it again",
        ),
    ],
)
def test_a_file_error_is_one_message_naming_the_path_the_reason_and_the_next_step(exc, shown, message, hint):
    error = errors.file_error(exc, "write the status to", shown)
    assert isinstance(error, errors.FileError) and error.exit_code == errors.EXIT_FAILURE
    assert error.detail == message
    assert error.hint == hint


def test_a_stop_signal_is_named_by_its_message_and_exits_128_plus_its_number():
    stop = errors.Stopped("SIGTERM", 15)
    assert isinstance(stop, KeyboardInterrupt)  # the same clean-up as Ctrl-C
    assert (str(stop), stop.signal_name, stop.exit_code) == ("SIGTERM", "SIGTERM", 143)
