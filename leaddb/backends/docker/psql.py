"""Apply the mounted migration files with ``psql -v ON_ERROR_STOP=1 -f`` inside the container.

One psql session for all files, holding the runner's advisory lock across them and
running the runner's end-of-file statement after each (``leaddb.runner``: one definition
of each rule, used by both appliers). Server timestamps printed between files time each
file; psql's own messages name the failing file and line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from leaddb import compose
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
) -> runner.ApplyResult:
    """Every file of ``mounted`` (the directory bind-mounted at the init directory) in order."""
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
    started = time.perf_counter()
    exit_code, (out, err) = container.exec_run(argv(user, dbname, port, list(paths)), demux=True)
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
    # psql stops at the error and its session ends: an open transaction is rolled back
    wrapped = bool(migration.statements) and migration.statements[0].sql.upper() in (
        "BEGIN",
        "START TRANSACTION",
    )
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
