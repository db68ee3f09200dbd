"""Reading a container's log without the engine: boot milestones and the failing init file.

The engine copies a container's stdout (the entrypoint's messages) and stderr (the server's and
psql's) separately, so a line of one can be logged before an earlier line of the other. These
logs are the official image's, with the two streams interleaved both ways.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leaddb.backends.docker.bootlog import LogLine, LogWaiter, boot_marks, init_failure, killed_by

INITDB = "/docker-entrypoint-initdb.d"
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

OUT_INITDB = ["Success. You can now start the database server using:", "waiting for server to start.... done"]
ERR_TEMP_READY = ["LOG:  database system is ready to accept connections"]
OUT_FILES = [
    f"/usr/local/bin/docker-entrypoint.sh: running {INITDB}/0001_extensions.sql",
    "BEGIN",
    "COMMIT",
    f"/usr/local/bin/docker-entrypoint.sh: running {INITDB}/0002_enums.sql",
    "COMMIT",
]
OUT_STOP = ["waiting for server to shut down.... done", "server stopped"]
OUT_COMPLETE = ["", "PostgreSQL init process complete; ready for start up.", ""]
ERR_FINAL = [
    "LOG:  starting PostgreSQL 15.18",
    'LOG:  listening on IPv4 address "127.0.0.1", port 5432',
    "LOG:  database system is ready to accept connections",
]


def log(*texts: str) -> list[LogLine]:
    return [LogLine(T0 + timedelta(milliseconds=10 * i), text) for i, text in enumerate(texts)]


FIRST_BOOT = [*OUT_INITDB, *ERR_TEMP_READY, *OUT_FILES, *OUT_STOP, *OUT_COMPLETE, *ERR_FINAL]


def test_first_boot_in_order_has_every_milestone_and_the_final_server_is_the_second_ready():
    lines = log(*FIRST_BOOT)
    marks = boot_marks(lines)
    assert list(marks) == ["initdb", "first file", "init stop", "init complete", "final ready"]
    assert marks["final ready"] == lines[-1].at


def test_first_boot_final_ready_logged_before_init_complete_is_still_found():
    """stdout's "init process complete" copied after the final server's stderr."""
    lines = log(*OUT_INITDB, *ERR_TEMP_READY, *OUT_FILES, *OUT_STOP, *ERR_FINAL, *OUT_COMPLETE)
    marks = boot_marks(lines)
    assert marks["final ready"] == lines[len(lines) - len(OUT_COMPLETE) - 1].at


@pytest.mark.parametrize("cut", range(len(FIRST_BOOT)))
def test_the_temporary_servers_ready_is_never_taken_for_the_final_one(cut):
    """Whatever part of a first boot has been logged, before the final server's line there is
    no "final ready": the waiter must not connect to the temporary server (socket only)."""
    assert "final ready" not in boot_marks(log(*FIRST_BOOT[:cut]))


def test_temporary_ready_logged_before_initdbs_stdout_waits_for_the_second_ready():
    lines = log(*ERR_TEMP_READY, *OUT_INITDB, *OUT_FILES)
    assert "final ready" not in boot_marks(lines)


@pytest.mark.parametrize(
    "texts",
    [
        [
            "PostgreSQL Database directory appears to contain a database; Skipping initialization",
            "",
            *ERR_FINAL,
        ],
        [*ERR_FINAL, "PostgreSQL Database directory appears to contain a database; Skipping initialization"],
    ],
    ids=["in order", "ready logged first"],
)
def test_later_boot_final_ready_is_the_first_ready_in_either_order(texts):
    lines = log(*texts)
    ready = next(line.at for line in lines if "ready to accept connections" in line.text)
    assert boot_marks(lines)["final ready"] == ready


def test_later_boot_ready_without_the_skip_line_yet_is_not_final():
    assert "final ready" not in boot_marks(log(*ERR_FINAL))


BROKEN = f"{INITDB}/0002_broken.sql"
ERR_BROKEN = [
    f'psql:{BROKEN}:3: ERROR:  relation "nope" does not exist',
    "LINE 1: INSERT INTO nope VALUES (1);",
    "                    ^",
]


@pytest.mark.parametrize(
    "texts",
    [
        [
            f"/usr/local/bin/docker-entrypoint.sh: running {INITDB}/0001_ok.sql",
            "COMMIT",
            f"/usr/local/bin/docker-entrypoint.sh: running {BROKEN}",
            *ERR_BROKEN,
        ],
        [
            f"/usr/local/bin/docker-entrypoint.sh: running {INITDB}/0001_ok.sql",
            "COMMIT",
            *ERR_BROKEN,
            f"/usr/local/bin/docker-entrypoint.sh: running {BROKEN}",
        ],
    ],
    ids=["in order", "error logged before its file"],
)
def test_init_failure_names_the_file_and_keeps_its_error_in_either_order(texts):
    failing, errors = init_failure(log(*texts))
    assert failing == BROKEN
    assert errors == ERR_BROKEN


def test_init_failure_ignores_errors_about_other_files():
    texts = [
        f"/usr/local/bin/docker-entrypoint.sh: running {INITDB}/0001_ok.sql",
        f"psql:{INITDB}/0001_ok.sql:1: ERROR:  something handled",
        f"/usr/local/bin/docker-entrypoint.sh: running {BROKEN}",
        *ERR_BROKEN,
    ]
    failing, errors = init_failure(log(*texts))
    assert (failing, errors) == (BROKEN, ERR_BROKEN)


class FlakyLogContainer:
    """A running container whose first log follow breaks after two lines; the next one
    streams the whole first boot."""

    name = "leadgen-postgres-1"
    status = "running"

    def __init__(self) -> None:
        self.follows = 0

    def reload(self) -> None:
        pass

    def logs(self, *, stream: bool = False, follow: bool = False, timestamps: bool = False):
        assert stream and follow and timestamps
        self.follows += 1
        stamped = [
            f"{line.at.isoformat().replace('+00:00', 'Z')} {line.text}\n".encode()
            for line in log(*FIRST_BOOT)
        ]

        def broken():
            yield b"".join(stamped[:2]) + b"2026-11-28T12:00:00.5Z half a li"
            raise ConnectionResetError("the engine dropped the log stream")

        return broken() if self.follows == 1 else iter(stamped)


def test_a_broken_log_follow_is_followed_again_and_its_leftovers_are_ignored():
    container = FlakyLogContainer()
    waiter = LogWaiter(container)
    try:
        lines = waiter.wait_final_ready(10, on_exit=lambda lines: AssertionError("not exited"))
    finally:
        waiter.close()
    assert container.follows == 2
    assert [line.text for line in lines] == FIRST_BOOT  # once each, without the broken half line
    assert "final ready" in boot_marks(lines)


@pytest.mark.parametrize(
    "error",
    ['ERROR:  relation "nope" does not exist', 'psql:<stdin>:2: ERROR:  relation "nope" does not exist'],
    ids=["psql 15 (no prefix on stdin)", "a psql that names <stdin>"],
)
def test_init_failure_of_a_compressed_file_keeps_psqls_stdin_error(error):
    """psql reads a .sql.gz from stdin: its error names no file of ours; the server's own log
    line about the same error (timestamped) is not taken for psql's."""
    gz = f"{INITDB}/0003_data.sql.gz"
    texts = [
        f"/usr/local/bin/docker-entrypoint.sh: running {gz}",
        '2026-11-30 00:18:49.230 UTC [53] ERROR:  relation "nope" does not exist at character 13',
        error,
        "LINE 1: INSERT INTO nope VALUES (1);",
    ]
    assert init_failure(log(*texts)) == (gz, texts[2:])


@pytest.mark.parametrize(
    "verb",
    ["sourcing", "running"],
    ids=["sourced (mode 0644 on Linux)", "executed (Docker Desktop shows a Windows file as 0777)"],
)
def test_a_shell_init_file_counts_whether_the_entrypoint_sources_or_executes_it(verb):
    """The official entrypoint sources a non-executable .sh and executes an executable one; a
    file bind-mounted from Windows is always executable there, so both words must count."""
    sh = f"{INITDB}/0003_seed.sh"
    announced = f"/usr/local/bin/docker-entrypoint.sh: {verb} {sh}"
    lines = log(*OUT_INITDB, *ERR_TEMP_READY, announced, *OUT_STOP, *OUT_COMPLETE, *ERR_FINAL)
    marks = boot_marks(lines)
    assert marks["first file"] == lines[len(OUT_INITDB) + len(ERR_TEMP_READY)].at
    assert list(marks) == ["initdb", "first file", "init stop", "init complete", "final ready"]

    # psql run by the script (-c, or a heredoc on stdin) names no file in its error
    texts = [*OUT_FILES[:2], announced, 'ERROR:  relation "nope" does not exist']
    failing, errors = init_failure(log(*texts))
    assert failing == sh
    assert errors == ['ERROR:  relation "nope" does not exist']


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ({"ExitCode": 137}, "SIGKILL, exit code 137"),  # docker kill
        ({"ExitCode": 143}, "SIGTERM, exit code 143"),
        ({"ExitCode": 129}, "SIGHUP, exit code 129"),
        ({"ExitCode": 131}, "SIGQUIT, exit code 131"),
        ({"ExitCode": 128 + 40}, "signal 40, exit code 168"),  # a real-time signal
        ({"ExitCode": 3}, None),  # psql's own exit code: not a kill
        ({"ExitCode": 137, "OOMKilled": True}, "out of memory: the kernel's OOM killer"),
    ],
)
def test_a_killed_container_is_named_by_linuxs_signals_whatever_the_host(state, said):
    """The container is Linux (Docker Desktop's VM too): its signal is named from Linux's table,
    never from the host's signal module, which on Windows has no SIGKILL, SIGHUP or SIGQUIT."""
    assert killed_by(state) == said
