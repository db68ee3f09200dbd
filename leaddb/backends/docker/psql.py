"""Apply the mounted migration files with ``psql -v ON_ERROR_STOP=1 -f`` inside the container.

One psql session for all files, with the runner's pinned session settings (``PGOPTIONS``),
holding the runner's advisory lock across them and
running the runner's end-of-file statement after each (``leaddb.runner``: one definition
of each rule, used by both appliers). Server timestamps printed between files time each
file; psql's own messages name the failing file and line.

Its server session is called by a name of its own (``PGAPPNAME``), so the host can watch it as
it watches the runner's (``leaddb.waits``: what a slow statement waits on, the limits, which
``PGOPTIONS`` also gives the server) and, when the task is interrupted, end it: the session is
terminated from the host and awaited, then psql itself is stopped (a shell in the container
wrote its pid), so nothing of the apply runs on, holds the apply lock or is rolled back later.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from leaddb import compose, masking, waits
from leaddb.errors import BackendError, MigrationError, NonIdempotentMigration
from leaddb.migrations import Migration, Statement

if TYPE_CHECKING:
    from leaddb import runner

PSQL_MESSAGE = re.compile(
    r"^psql:(?P<file>[^:]+):(?P<line>\d+): (?P<level>ERROR|FATAL|WARNING|NOTICE|INFO):\s+"
    r"(?:(?P<sqlstate>[0-9A-Z]{5}): )?(?P<message>.*)$"
)
# the same from psql reading stdin or -c: no file, no line
PSQL_UNNAMED = re.compile(r"^(?P<level>ERROR|FATAL):\s+(?:(?P<sqlstate>[0-9A-Z]{5}): )?(?P<message>.*)$")
PSQL_FOLLOWUP = re.compile(r"^(DETAIL|HINT|CONTEXT|LINE \d+|QUERY|LOCATION):")
MARK = "leaddb-mark"
# printed before the lock, after it and after each file: server timestamps time the files
MARK_QUERY = "SELECT 'leaddb-mark', extract(epoch FROM clock_timestamp())"
# psql in the background of a shell that wrote its pid (to stop it when the task is interrupted)
# and removes that file when psql ends; the shell exits with psql's code
WITH_PID_FILE = '"$@" & pid=$!; echo "$pid" > "$0"; wait "$pid"; code=$?; rm -f "$0"; exit "$code"'
STOP_BY_PID_FILE = '[ -f "$0" ] && kill -TERM "$(cat "$0")" 2>/dev/null; rm -f "$0"; true'


def statement_at(migration: Migration, line: int) -> Statement | None:
    """The statement psql was running when it reported ``line`` (the line it had read up to)."""
    found = None
    for statement in migration.statements:
        if statement.line <= line:
            found = statement
    return found


def argv(user: str, dbname: str, port: int, targets: Sequence[str]) -> list[str]:
    from leaddb import runner  # psycopg, lazily: the boot log's reader imports this module

    command = [
        "psql",
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        "VERBOSITY=verbose",
        "--no-psqlrc",
        "--quiet",
        "--no-align",
        "--tuples-only",
        "-U",
        user,
        "-d",
        dbname,
        "-p",
        str(port),
        "-c",
        "SET client_min_messages = notice",
        "-c",
        MARK_QUERY,
        "-c",
        runner.LOCK,
        "-c",
        MARK_QUERY,
    ]
    for target in targets:
        command += ["-f", target, "-c", runner.END_OF_FILE, "-c", MARK_QUERY]
    return [*command, "-c", runner.UNLOCK]


def apply(
    container,
    migrations: Sequence[Migration],
    *,
    mounted: Path,
    user: str,
    dbname: str,
    port: int,
    reapply: bool,
    project_dir: Path,
    on_file=None,
    conninfo: str | None = None,
) -> runner.ApplyResult:
    """Every file of ``mounted`` (the directory bind-mounted at the init directory) in order.
    ``conninfo`` reaches the same database from the host: for watching psql's session, and ending
    it when the task is interrupted."""
    from leaddb import runner

    paths: dict[str, Migration] = {}
    for migration in migrations:
        if migration.path.resolve().parent != mounted:
            raise BackendError(
                f"{migration.display(project_dir)} is not in {mounted}, the directory "
                f"mounted at {compose.INITDB_DIR}",
                hint="apply the files of the mounted migrations directory",
            )
        paths[str(compose.INITDB_DIR / migration.name)] = migration
    token = f"leaddb-psql-{secrets.token_hex(6)}"
    pid_file = f"/tmp/{token}.pid"
    limits = waits.current()
    # the runner's pinned settings (schema public, UTF-8) after the limits
    environment = {"PGAPPNAME": token, **runner.session_environment(limits.server_options())}
    command = ["sh", "-c", WITH_PID_FILE, pid_file, *argv(user, dbname, port, list(paths))]
    locate = waits.locator(
        [(f"{m.display(project_dir)}:{st.line}", st.sql) for m in migrations for st in m.statements]
    )
    watcher = waits.Watcher(
        conninfo or "",
        application=token,
        limits=limits,
        named_locks={runner.ADVISORY_LOCK_KEY: runner.APPLY_LOCK},
        locate=locate,
    )
    started = time.perf_counter()
    try:
        if conninfo:
            watcher.__enter__()
            watcher.running(None)
        exit_code, (out, err) = container.exec_run(command, demux=True, environment=environment)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: psql and its session go too
        exc.add_note(stop(container, pid_file, conninfo, token))
        raise
    finally:
        watcher.__exit__(None, None, None)
    elapsed = time.perf_counter() - started
    stdout = (out or b"").decode("utf-8", "replace")
    stderr = (err or b"").decode("utf-8", "replace")
    marks = []  # before the lock, after it, then after each file
    for line in stdout.splitlines():
        label, _, at = line.partition("|")
        if label == MARK:
            marks.append(float(at))
    notices: dict[str, list[str]] = {}
    for line in stderr.splitlines():
        found = PSQL_MESSAGE.match(line)
        if found and found["level"] in ("NOTICE", "WARNING", "INFO"):
            notices.setdefault(found["file"], []).append(found["message"])
    if exit_code != 0:
        if watcher.fired is not None:
            raise _timed_out(watcher.fired, stderr, paths, project_dir)
        if runner.TRANSACTION_LEFT_OPEN in stderr and 2 <= len(marks) < len(paths) + 2:
            raise runner.unterminated_transaction(list(paths.values())[len(marks) - 2], project_dir)
        raise _failure(stderr, paths, reapply, exit_code, container.name, project_dir)
    if len(marks) != len(paths) + 2:
        raise BackendError(f"psql in container {container.name} printed unexpected output:\n{stdout}")
    result = runner.ApplyResult(seconds=elapsed, lock_wait_seconds=marks[1] - marks[0])
    previous = marks[1]
    for target, migration, done in zip(paths, paths.values(), marks[2:], strict=True):
        file_result = runner.FileResult(
            migration, max(0.0, done - previous), len(migration.statements), tuple(notices.get(target, ()))
        )
        previous = done
        result.files.append(file_result)
        if on_file:
            on_file(file_result)
    return result


def stop(container, pid_file: str, conninfo: str | None, token: str) -> str:
    """After an interruption: end psql's session on the server (its statement and transaction
    with it, and the apply lock), then psql. What became of them, in words."""
    import psycopg

    said = []
    if conninfo:
        try:
            ended, left = waits.terminate(conninfo, token)
            pids = ", ".join(map(str, ended)) or "none left"
            said.append(
                f"psql's session on the server (pid {pids}) is still there and holds the apply lock"
                if left
                else f"psql's session on the server (pid {pids}) was ended: the statement in progress was "
                "cancelled and its transaction rolled back; the apply lock is free"
            )
        except psycopg.Error as exc:
            reason = masking.scrub(" ".join(str(exc).split()), conninfo)
            said.append(f"psql's session on the server could not be ended ({reason})")
    try:
        container.exec_run(["sh", "-c", STOP_BY_PID_FILE, pid_file])
        said.append(f"psql in container {container.name} was stopped")
    except Exception as exc:  # noqa: BLE001 - the engine's reason, reported
        said.append(f"psql in container {container.name} could not be stopped ({exc})")
    return "; ".join(said)


def _timed_out(verdict: waits.Verdict, stderr: str, paths: dict[str, Migration], project_dir: Path):
    """The watcher cancelled psql's statement past a limit: psql's error names file and line."""
    from leaddb import runner

    found = next(
        (m for line in stderr.splitlines() if (m := PSQL_MESSAGE.match(line)) and m["level"] == "ERROR"), None
    )
    migration = paths.get(found["file"]) if found else None
    statement = statement_at(migration, int(found["line"])) if migration and found else None
    if migration is None or statement is None:
        return verdict.error(None, "the file being applied was rolled back if it is one transaction")
    return verdict.error(
        f"{migration.display(project_dir)}:{statement.line}",
        runner.left_state(migration, _wrapped(migration)),
        statement.sql,
    )


def _wrapped(migration: Migration) -> bool:
    """psql stops at the error and its session ends: an open transaction is rolled back."""
    return bool(migration.statements) and migration.statements[0].sql.upper() in (
        "BEGIN",
        "START TRANSACTION",
    )


def _failure(
    stderr: str,
    paths: dict[str, Migration],
    reapply: bool,
    exit_code: int,
    container_name: str,
    project_dir: Path,
) -> MigrationError | NonIdempotentMigration | BackendError:
    from leaddb import runner

    lines = stderr.splitlines()
    index, found = next(
        ((i, m) for i, line in enumerate(lines) if (m := PSQL_MESSAGE.match(line)) and m["level"] == "ERROR"),
        (None, None),
    )
    migration = paths.get(found["file"]) if found else None
    if found is None or migration is None:
        return BackendError(
            f"psql in container {container_name} failed (exit {exit_code}):\n"
            + "\n".join("    " + line for line in lines[-20:]),
            hint="see psql's output above",
        )
    line = int(found["line"])
    statement = statement_at(migration, line)
    details = [f"psql reported line {line}"]
    for extra in lines[index + 1 :]:
        if not PSQL_FOLLOWUP.match(extra) or extra.startswith("LOCATION:"):
            break
        details.append(extra.lower().split(":", 1)[0] + ":" + extra.split(":", 1)[1])
    wrapped = _wrapped(migration)
    return runner.migration_failure(
        migration,
        statement,
        line=statement.line if statement else line,
        message=found["message"],
        sqlstate=found["sqlstate"],
        details=details,
        reapply=reapply,
        project_dir=project_dir,
        rolled_back=wrapped,
    )


def mounted_directory(project_dir: Path, source: str) -> Path:
    """The host directory a compose bind mount names (relative to the project)."""
    return (project_dir / Path(*PurePosixPath(source).parts)).resolve()
