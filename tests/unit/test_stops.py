"""The pieces of stopping and of waiting, without a server: which signals stop a task on each
platform, how the handler turns them into what Ctrl-C does (once), the message and exit code of
each stop, the wait flags' values, and what an ordinary I/O failure says."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from leaddb import cli, platforms, waits
from leaddb.errors import EXIT_SIGNAL_BASE, FileError, OptionError, Stopped, file_error, file_errors


def test_the_stop_signals_of_each_platform():
    assert platforms.stop_signals(windows=False) == (("SIGTERM", 15), ("SIGHUP", 1))
    # Windows: Ctrl-Break and closing the console window (the C runtime raises SIGBREAK for both)
    assert [name for name, _ in platforms.stop_signals(windows=True)] == ["SIGBREAK"]


@pytest.mark.parametrize(
    ("name", "number", "code"), [("SIGTERM", 15, 143), ("SIGHUP", 1, 129), ("SIGBREAK", 21, 149)]
)
def test_a_stop_by_a_signal_exits_128_plus_its_number_and_says_which(name, number, code):
    stop = Stopped(name, number)
    stop.add_note("the apply's session on the server (pid 7) was ended")
    failure = cli.interrupted("apply", "dsn", stop)
    assert failure.exit_code == code == EXIT_SIGNAL_BASE + number
    assert str(failure).startswith(
        f"terminated ({name}): db.apply stopped; the file being applied was rolled"
    )
    assert "\n  the apply's session on the server (pid 7) was ended\n  next step: `invoke db.apply`" in str(
        failure
    )
    assert isinstance(stop, KeyboardInterrupt)  # what psycopg cancels a statement on


def test_ctrl_c_is_still_130_and_interrupted():
    import leaddb.backends.local  # noqa: F401 - a task that chose it has loaded it

    failure = cli.interrupted("verify", "local", KeyboardInterrupt())
    assert failure.exit_code == 130
    assert str(failure).startswith("interrupted: db.verify stopped; the local cluster may be half-created")


def test_what_ctrl_c_left_is_the_backends_own_words_and_any_backends_before_one_is_loaded(monkeypatch):
    """``built`` is the backend class's; the CLI keeps no table of backends by name. A backend
    no task loaded has built nothing: then, as for ``auto``, the words that fit any."""
    import sys

    from leaddb import backends
    from leaddb.backends.dsn import DsnBackend

    monkeypatch.setattr(DsnBackend, "built", "the stand-in's words")
    assert "db.reset stopped; the stand-in's words may be half-created" in str(
        cli.interrupted("reset", "dsn", KeyboardInterrupt())
    )
    for name in ("auto", "no-such-backend"):
        assert backends.ANY_BUILT in str(cli.interrupted("reset", name, KeyboardInterrupt()))
    monkeypatch.delitem(sys.modules, "leaddb.backends.dsn")
    assert backends.ANY_BUILT in str(cli.interrupted("reset", "dsn", KeyboardInterrupt()))


@pytest.mark.posix_only("sends itself SIGTERM and SIGHUP")
def test_the_handler_stops_once_and_ignores_what_comes_while_stopping():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Stopped) as stopped, cli.stop_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0)  # the handler runs here, at the latest
            pytest.fail("SIGTERM did not stop the block")
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # while stopping: ignored, no second exception
            os.kill(os.getpid(), signal.SIGINT)
    assert stopped.value.signal_name == "SIGTERM" and stopped.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == before  # put back


@pytest.mark.posix_only("nohup ignores SIGHUP")
def test_a_signal_ignored_when_the_task_starts_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with cli.stop_signals():
            os.kill(os.getpid(), signal.SIGHUP)
            signal.sigtimedwait([], 0)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        ("30", 30.0),
        ("1.5", 1.5),
        ("30s", 30.0),
        (" 2min ", 120.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("0", 0.0),
    ],
)
def test_a_wait_limit_is_seconds_or_a_number_with_a_unit(given, seconds):
    limits = cli.wait_limits(given, given, "", "")
    assert (limits.lock, limits.statement) == (seconds, seconds)
    assert (limits.lock_source, limits.statement_source) == ("--lock-timeout", "--statement-timeout")


def test_a_wait_limit_from_the_configuration_is_named_as_such_and_the_defaults_hold():
    limits = cli.wait_limits(None, None, "45", "")
    assert (
        limits.lock == 45
        and limits.lock_source == "INVOKE_DB_LOCK_TIMEOUT (or db.lock_timeout in invoke.yaml)"
    )
    assert limits.statement == waits.DEFAULT_STATEMENT_TIMEOUT
    assert cli.wait_limits(None, None, "", "").lock == waits.DEFAULT_LOCK_TIMEOUT == 120


@pytest.mark.parametrize("given", ["abc", "-1", "1e3", "2d", "", " ", "nan", "inf", "٣", True])
def test_a_wait_limit_that_is_not_one_is_refused_naming_the_flag(given):
    if isinstance(given, str) and not given.strip():
        assert cli.wait_limits(given, None, "", "").lock == waits.DEFAULT_LOCK_TIMEOUT  # not given
        return
    with pytest.raises(OptionError) as refused:
        cli.wait_limits(given, None, "", "")
    assert str(refused.value).startswith("--lock-timeout: ")
    assert "is not a number of seconds" in str(refused.value)
    assert (
        "next step: seconds, or with a unit: e.g. --lock-timeout 30, 30s, 2min or 500ms; 0 for no limit"
        in str(refused.value)
    )


def test_a_wait_limit_over_a_day_is_refused():
    with pytest.raises(OptionError, match=r"--statement-timeout: '25h' is more than a day \(86400 s\)"):
        cli.wait_limits(None, "25h", "", "")


@pytest.mark.parametrize(
    ("number", "hint"),
    [
        (errno.EACCES, "check its permissions"),
        (errno.EROFS, "the file system is read-only"),
        (errno.ENOSPC, "the disk is full"),
        (errno.ENOENT, "check that the path exists"),
    ],
)
def test_a_file_that_cannot_be_read_or_written_is_one_ordinary_message(number, hint):
    failure = file_error(OSError(number, os.strerror(number), "/x/status.json"), "write the status to")
    assert isinstance(failure, FileError) and failure.exit_code == 1
    assert str(failure).startswith(f"cannot write the status to /x/status.json: {os.strerror(number)}\n")
    assert f"next step: {hint}" in str(failure)
    with pytest.raises(FileError, match="^cannot read reports/a: "), file_errors("read", "reports/a"):
        raise OSError(number, os.strerror(number), "/abs/reports/a")


def test_an_os_error_without_a_file_says_what_the_system_refused():
    failure = file_error(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "use")
    assert str(failure).startswith("ConnectionResetError: Connection reset by peer\n  next step: ")
