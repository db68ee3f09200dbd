"""Faults and bad input through the tasks, as a user meets them: one clear message, the exit code,
no traceback, and the database in a known state afterwards (issue 6, items 1-6; local backend).

Every test drives the tasks in a copy of the project with a local-cluster state dir of its own:
``python -m invoke`` where the process is the point (the task holding the lock, killed, racing),
in process (tests/workspace.py) where the refusal or the message is. Slow steps inside a
migration wait on a gate the test controls (a row lock it holds, see tests/printed.py), never on
a sleep.
The tests that run that cluster are marked ``needs_pg_binaries``; the others (refusals before any
server is needed, the DSN backend on the session's server) run wherever the suite runs.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from printed import Gate
from psycopg import sql
from psycopg.conninfo import make_conninfo
from server_choice import tcp_address
from workspace import Workspace as SharedWorkspace
from workspace import clean

from leaddb import catalog, compose, platforms, runner, verdict
from leaddb.backends.local import MARKER, LocalBackend
from leaddb.backends.local import Cluster as LocalCluster
from leaddb.errors import BackendError

SPEC = "Technical-Architecture-Specification.md"
MIGRATIONS = Path("api/db/migrations")
WAIT = 60  # seconds: the bound of every polling loop


class Workspace(SharedWorkspace):
    """A copy of the project (tests/workspace.py) with its own LEADDB_STATE_DIR, on the local backend."""

    def __init__(self, project_dir: Path) -> None:
        super().__init__(project_dir, prefix="leaddb-rel-", env={}, docs=True)  # db.drift checks the diagram
        self.state = self.root / "state"  # made private (0700; as root 0710 root:postgres) on first use
        self.env.update({"LEADDB_STATE_DIR": str(self.state), "INVOKE_DB_BACKEND": "local"})
        self.gate = Gate(f"leaddb_gate_{secrets.token_hex(4)}")

    @property
    def backend(self) -> LocalBackend:
        return LocalBackend(self.root, state_dir=self.state)

    def conninfo(self, dbname: str | None = None) -> str:
        return self.backend.conninfo(dbname)

    def gated_migration(self, name: str, table: str) -> Path:
        """A migration that creates ``table``, then holds its transaction open until the test
        releases its gate (tests/printed.py), within the spec's rules."""
        return self.write(name, compliant(name, f"CREATE TABLE {table} (id int);\n" + self.gate.sql()))

    def wait_entered(self, process: subprocess.Popen, *, busy: int = 0) -> None:
        def server() -> str | None:
            try:
                return self.conninfo("postgres")
            except BackendError:  # the reset has not made its cluster yet
                return None

        self.gate.wait_entered(server, process, busy=busy)

    def release(self) -> None:
        self.gate.release()

    def remove(self) -> None:
        self.gate.release()  # its role goes with the cluster
        self.in_process("db.down")  # a clean-up, not a proof: no child's start-up
        super().remove()


def compliant(name: str, body: str) -> str:
    """A migration following the spec's file rules: the header naming it, then one transaction."""
    return f"-- migration: {MIGRATIONS.as_posix()}/{name}\nBEGIN;\n{body}COMMIT;\n"


def relations(conninfo: str) -> set[str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace")
        return {r[0] for r in rows}


def setup_reset(ws: Workspace) -> None:
    """A reset cluster for the test to work on, the task run in this process (tests/workspace.py):
    the reset is not what these tests prove (tests/test_tasks.py runs it as a user does)."""
    result = ws.in_process("db.reset")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def workspace(project_dir):
    ws = Workspace(project_dir)
    yield ws
    ws.remove()


@pytest.fixture(scope="module")
def applied(project_dir):
    """One workspace with a reset cluster, shared by the bad-input tests: each restores it."""
    ws = Workspace(project_dir)
    result = ws("db.reset")
    assert result.returncode == 0, result.stderr
    yield ws
    ws.remove()


@pytest.fixture
def scratch(applied):
    """The shared workspace; afterwards its migrations, spec and schema are as the reset left them."""
    before = catalog.snapshot_of(applied.conninfo())
    spec = (applied.root / SPEC).read_text(encoding="utf-8")
    originals = set((applied.root / MIGRATIONS).iterdir())
    yield applied
    for path in set((applied.root / MIGRATIONS).iterdir()) - originals:
        path.unlink()
    (applied.root / SPEC).write_text(spec, encoding="utf-8", newline="\n")
    with psycopg.connect(applied.conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS probe_kept")
    assert catalog.snapshot_of(applied.conninfo()) == before


# -- 1. bad migrations -----------------------------------------------------------------------

KEPT = compliant("0008_kept.sql", "CREATE TABLE IF NOT EXISTS probe_kept (id int);\n")
PROBE = "CREATE TABLE probe_bad (id int);\n"


def probe(body: str = PROBE, name: str = "0008_probe.sql") -> dict[str, str]:
    return {name: compliant(name, body)}


# one case per rule of the spec's "Migrations: directory and tooling" (and the parser's own refusals);
# every file creates probe_bad, so "nothing applied" is a catalog without it
REFUSED_BEFORE_ANYTHING_RUNS = {
    "syntax error": (
        probe(PROBE + "CREAT TABLE probe_x ();\n"),
        [
            '0008_probe.sql:4: rule "plain SQL": syntax error',
            "CREAT TABLE probe_x",
            "next step: fix the statement",
        ],
    ),
    "psql meta-command": (
        probe(PROBE + "\\i other.sql\n"),
        [
            '0008_probe.sql:4: rule "plain SQL": psql meta-command `\\i`',
            "next step: replace the meta",
        ],
    ),
    "empty file": (
        {"0008_probe.sql": "\n\n"},
        ['0008_probe.sql: rule "plain SQL": empty migration', "next step: write its SQL or remove the file"],
    ),
    "CRLF": (
        {"0008_probe.sql": compliant("0008_probe.sql", PROBE).replace("\n", "\r\n").encode()},
        ['0008_probe.sql:1: rule "text": CRLF line ending', "next step: save it with LF endings"],
    ),
    "byte-order mark": (
        {"0008_probe.sql": b"\xef\xbb\xbf" + compliant("0008_probe.sql", PROBE).encode()},
        ['0008_probe.sql:1: rule "text": starts with a UTF-8 byte-order mark', "without BOM"],
    ),
    "tab": (
        probe("CREATE TABLE probe_bad (\n\tid int\n);\n"),
        ['0008_probe.sql:4: rule "text": a tab character', "next step: indent with spaces"],
    ),
    "no newline at the end": (  # its block in the spec ends in one: the file differs from it too
        {"0008_probe.sql": compliant("0008_probe.sql", PROBE)[:-1]},
        [
            '0008_probe.sql:4: rule "text": no newline at the end of the file',
            '0008_probe.sql:4: rule "printed in the spec": differs from its block',
            "one newline",
        ],
    ),
    "gap in the numbers": (
        probe(name="0009_probe.sql"),
        ['0009_probe.sql: rule "naming": expected number 0008, found 0009', "number migrations contiguously"],
    ),
    "duplicate number": (
        probe(name="0007_probe.sql"),
        [
            '0007_probe.sql: rule "naming": duplicate number 0007: 0007_invoices.sql, 0007_probe.sql',
            "number migrations contiguously",
        ],
    ),
    "outside the naming pattern": (
        {"0008-Probe.sql": compliant("0008-Probe.sql", PROBE)},
        [
            '0008-Probe.sql: rule "naming": not a migration file name (expected NNNN_snake_name.sql',
            "rename it",
        ],
    ),
    "five digits": (
        probe(name="00008_probe.sql"),
        ['00008_probe.sql: rule "naming": not a migration file name', "rename it"],
    ),
    "not SQL at all": (
        {"README.txt": "notes\n"},
        ['README.txt: rule "naming": not a migration file name', "move it out of the migrations directory"],
    ),
    "no header": (  # its block in the spec names the file: the file differs from it there too
        {"0008_probe.sql": compliant("0008_probe.sql", PROBE).split("\n", 1)[1]},
        [
            '0008_probe.sql:1: rule "header": the first line is `BEGIN;`, not the header '
            "`-- migration: api/db/migrations/0008_probe.sql`",
            '0008_probe.sql:1: rule "printed in the spec": differs from its block',
            "- header: make the first line `-- migration: <migrations directory>/<file name>`",
        ],
    ),
    "a header naming another file": (
        {"0008_probe.sql": compliant("0007_invoices.sql", PROBE)},
        [
            '0008_probe.sql:1: rule "header": the header is '
            "`-- migration: api/db/migrations/0007_invoices.sql`; "
            "this file's is `-- migration: api/db/migrations/0008_probe.sql`",
            '0008_probe.sql:1: rule "printed in the spec": differs from its block',
        ],
    ),
    "a file the spec does not print": (  # issue 17: it would make a superuser
        {"0008_probe.sql": None},
        [
            '0008_probe.sql: rule "printed in the spec": the spec prints no block for this file, '
            "and nothing runs that the spec does not print",
            '0008_probe.sql:5: rule "schema only": EXECUTE of SQL built at run time (in a DO block)',
            "- printed in the spec: print the file's SQL in the spec's section",
        ],
    ),
    "not schema": (
        probe(PROBE + "CREATE ROLE probe_superuser SUPERUSER;\n"),
        ['0008_probe.sql:4: rule "schema only": CREATE ROLE … SUPERUSER is not schema'],
    ),
    "dynamic SQL": (
        probe(PROBE + "DO $$\nBEGIN\n    EXECUTE 'COPY (SELECT 1) TO PROGRAM ''id''';\nEND\n$$;\n"),
        ['0008_probe.sql:6: rule "schema only": EXECUTE of SQL built at run time (in a DO block)'],
    ),
    "no BEGIN": (
        {"0008_probe.sql": compliant("0008_probe.sql", PROBE).replace("BEGIN;\n", "")},
        [
            '0008_probe.sql:2: rule "one transaction": the first statement is '
            "`CREATE TABLE probe_bad (id int)`, not BEGIN"
        ],
    ),
    "no COMMIT": (
        {"0008_probe.sql": compliant("0008_probe.sql", PROBE).replace("COMMIT;\n", "")},
        ['0008_probe.sql:3: rule "one transaction": the last statement is `CREATE TABLE probe_bad (id int)`'],
    ),
    "a commit inside": (
        probe(PROBE + "COMMIT;\nCREATE TABLE probe_x (id int);\n"),
        ['0008_probe.sql:4: rule "one transaction": COMMIT inside the file\'s transaction'],
    ),
    "destructive": (
        probe(PROBE + "ALTER TABLE leads ALTER COLUMN phone DROP NOT NULL;\n"),
        [
            '0008_probe.sql:4: rule "not destructive": DROP NOT NULL on leads.phone',
            "Destructive change allowed",
        ],
    ),
    "a function": (
        probe(PROBE + "CREATE FUNCTION probe_f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"),
        ['0008_probe.sql:4: rule "no logic": CREATE FUNCTION is logic, not schema'],
    ),
    "data": (
        probe("CREATE TABLE probe_bad (id int);\nINSERT INTO probe_bad VALUES (1);\n"),
        ['0008_probe.sql:4: rule "no logic": INSERT writes data'],
    ),
}


def write_case(ws: Workspace, files: dict[str, str | bytes | None]) -> None:
    for name, content in files.items():
        if content is None:  # written, not printed: a guarded dynamic CREATE ROLE … SUPERUSER
            (ws.root / MIGRATIONS / name).write_text(
                compliant(name, "DO $$\nBEGIN\n    EXECUTE 'CREATE ROLE probe_r SUPERUSER';\nEND\n$$;\n"),
                encoding="utf-8",
                newline="\n",
            )
        else:
            ws.write(name, content)


def check_refusal(result: subprocess.CompletedProcess, expected: list[str]) -> None:
    assert result.returncode == 1, result.stdout
    message = clean(result)
    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert len(message.strip().splitlines()) <= 7  # one message, not a dump
    assert "apply:" not in result.stdout  # not even the valid files before it were sent again


# end to end (a child `invoke db.apply` against a running cluster): a parser's refusal and a
# file refused by two rules (printed in the spec, schema only); the rest of the cases in process
REFUSED_END_TO_END = ["syntax error", "a file the spec does not print"]


@pytest.mark.needs_pg_binaries
@pytest.mark.parametrize("case", REFUSED_END_TO_END)
def test_unreadable_migration_is_refused_before_anything_runs(scratch, case):
    files, expected = REFUSED_BEFORE_ANYTHING_RUNS[case]
    before = catalog.snapshot_of(scratch.conninfo())
    write_case(scratch, files)
    check_refusal(scratch("db.apply"), expected)
    # nothing ran: no object appeared
    assert catalog.snapshot_of(scratch.conninfo()) == before


@pytest.fixture(scope="module")
def offline(project_dir):
    """A workspace whose tasks run in this process and never get a server: its state directory
    must never be made (a refusal before anything runs starts nothing)."""
    ws = Workspace(project_dir)
    yield ws
    assert not ws.state.exists()
    shutil.rmtree(ws.root, ignore_errors=True)


@pytest.fixture
def refusing(offline):
    spec = (offline.root / SPEC).read_text(encoding="utf-8")
    originals = set((offline.root / MIGRATIONS).iterdir())
    yield offline
    for path in set((offline.root / MIGRATIONS).iterdir()) - originals:
        path.unlink()
    (offline.root / SPEC).write_text(spec, encoding="utf-8", newline="\n")


@pytest.mark.parametrize("case", [c for c in REFUSED_BEFORE_ANYTHING_RUNS if c not in REFUSED_END_TO_END])
def test_every_rule_refuses_db_apply_before_a_server_is_touched(refusing, case):
    """Each rule's case through db.apply's own argument handling, checks and message (the task
    run in process): one message naming file, line and rule, exit 1, and nothing started, not
    even the local cluster. tests/unit/test_rules.py (and test_scope, test_printed) prove each
    rule's verdict in detail; the end-to-end cases above prove a refusal changes no server."""
    files, expected = REFUSED_BEFORE_ANYTHING_RUNS[case]
    write_case(refusing, files)
    check_refusal(refusing.in_process("db.apply"), expected)
    assert not refusing.state.exists()


FAILING_ON_THE_SERVER = {
    "unknown type": (
        "CREATE TABLE probe_bad (id int);\nCREATE TABLE probe_bad2 (x no_such_type);\n",
        4,
        "42704",
        'type "no_such_type" does not exist',
        "CREATE TABLE probe_bad2 (x no_such_type)",
    ),
    "a name already taken": (
        "CREATE TABLE probe_bad (id int);\nCREATE TABLE markets (\n    id int\n);\n",
        4,
        "42P07",
        'relation "markets" already exists',
        "CREATE TABLE markets (\n        id int\n    )",
    ),
    "an index over a missing column": (
        "CREATE TABLE probe_bad (id int);\nCREATE INDEX probe_bad_idx\n    ON probe_bad (nope);\n",
        4,  # the server gives no position for this error: the statement's first line
        "42703",
        'column "nope" does not exist',
        "CREATE INDEX probe_bad_idx\n        ON probe_bad (nope)",
    ),
}


@pytest.mark.needs_pg_binaries
@pytest.mark.parametrize("case", FAILING_ON_THE_SERVER, ids=list(FAILING_ON_THE_SERVER))
def test_failing_file_leaves_nothing_and_files_before_it_stay(scratch, case):
    text, line, sqlstate, reason, statement = FAILING_ON_THE_SERVER[case]
    scratch.write("0008_kept.sql", KEPT)
    scratch.write("0009_probe.sql", compliant("0009_probe.sql", text))
    result = scratch("db.apply")
    assert result.returncode == 1, result.stdout
    message = clean(result)
    assert message.startswith(f"api/db/migrations/0009_probe.sql:{line}: "), message
    assert reason in message and f"[SQLSTATE {sqlstate}]" in message
    assert statement in message
    assert "next step: fix 0009_probe.sql; the file's transaction was rolled back" in message
    live = relations(scratch.conninfo())
    assert "probe_kept" in live  # the file before it stays applied
    assert not {"probe_bad", "probe_bad2"} & live  # the failing file left nothing
    with psycopg.connect(scratch.conninfo()) as conn:
        assert conn.execute("SELECT count(*) FROM markets").fetchone()[0] == 0
    # fixing the file is all it takes: the next apply completes
    scratch.write(
        "0009_probe.sql", compliant("0009_probe.sql", "CREATE TABLE IF NOT EXISTS probe_kept (id int);\n")
    )
    assert scratch("db.apply").returncode == 0


@pytest.mark.needs_pg_binaries
def test_a_file_without_header_or_transaction_is_refused_by_every_task_before_it_runs(scratch):
    """Issue 10's case: no header, no BEGIN/COMMIT, and the second statement fails. Applied the way
    psql -f applies it, the first statement would stay; every task refuses the file up front."""
    scratch.write("0008_half.sql", "CREATE TABLE probe_half (id int);\nCREATE TABLE probe_half (id int);\n")
    before = catalog.snapshot_of(scratch.conninfo())
    for task in ("db.apply", "db.reapply", "db.reset", "db.lint"):  # db.apply as a user runs it
        result = scratch(task) if task == "db.apply" else scratch.in_process(task)
        assert result.returncode == 1, (task, result.stdout, result.stderr)
        message = clean(result)
        assert message.startswith("4 violations of the migration rules; nothing was applied:\n"), message
        assert '\n  - api/db/migrations/0008_half.sql:1: rule "header": the first line is ' in message
        assert (
            '\n  - api/db/migrations/0008_half.sql:1: rule "one transaction": the first statement is '
            "`CREATE TABLE probe_half (id int)`, not BEGIN"
        ) in message
        assert (
            '\n  - api/db/migrations/0008_half.sql:2: rule "one transaction": the last statement is '
            "`CREATE TABLE probe_half (id int)`, not COMMIT"
        ) in message
        assert '\n  - api/db/migrations/0008_half.sql:1: rule "printed in the spec": differs' in message
        assert catalog.snapshot_of(scratch.conninfo()) == before, task
    assert scratch.backend.cluster.is_running()  # the refused reset removed nothing
    assert "probe_half" not in relations(scratch.conninfo())


# -- 2. bad spec -------------------------------------------------------------------------------


def edit_spec(ws: Workspace, old: str, new: str, count: int = 1) -> None:
    path = ws.root / SPEC
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= count, old
    path.write_text(text.replace(old, new, count), encoding="utf-8", newline="\n")


def spec_line(ws: Workspace, fragment: str) -> int:
    lines = (ws.root / SPEC).read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if fragment in line)


@pytest.mark.needs_pg_binaries
def test_spec_without_a_declaration_exits_2_citing_the_heading(scratch):
    edit_spec(scratch, "- Migrations directory: `api/db/migrations`\n", "")
    heading = spec_line(scratch, "## Migrations: directory and tooling")
    for task in ("db.apply", "db.reapply", "db.reset"):  # db.apply as a user runs it
        result = scratch(task) if task == "db.apply" else scratch.in_process(task)
        assert result.returncode == 2, (task, result.stdout)
        message = clean(result)
        assert message.startswith("MIGRATION_PATH_UNSPECIFIED: the spec does not declare")
        assert f'{SPEC}:{heading}, section "Migrations: directory and tooling"' in message
    assert scratch.backend.cluster.is_running()  # the refused reset removed nothing


def test_two_contradicting_declarations_exit_2_naming_both_lines(refusing):
    edit_spec(
        refusing,
        "- Migrations directory: `api/db/migrations`\n",
        "- Migrations directory: `api/db/migrations`\n- Migrations directory: `db/migrations`\n",
    )
    first = spec_line(refusing, "Migrations directory: `api/db/migrations`")
    result = refusing.in_process("db.apply")
    assert result.returncode == 2
    message = clean(result)
    assert "contradicting migrations directories" in message
    assert f"`api/db/migrations` at line {first}" in message
    assert f"`db/migrations` at line {first + 1}" in message


@pytest.mark.parametrize("task", ["db.drift", "db.apply", "db.introspect", "db.status"])
def test_spec_block_naming_a_missing_file_is_refused_by_every_task(refusing, task):
    """Verbatim both ways: the block names a file that is not there, and the file it was is not
    printed. Refused like any rule, before a server is asked anything (it was SCHEMA_DRIFT, from
    db.drift only)."""
    edit_spec(
        refusing,
        "-- migration: api/db/migrations/0007_invoices.sql",
        "-- migration: api/db/migrations/0007_invoicing.sql",
    )
    line = spec_line(refusing, "-- migration: api/db/migrations/0007_invoicing.sql")
    result = refusing.in_process(task)
    assert result.returncode == 1, result.stdout
    message = clean(result)
    assert message.startswith("2 violations of the migration rules; nothing was applied:\n"), message
    assert (
        '  - api/db/migrations/0007_invoices.sql: rule "printed in the spec": the spec prints no block for '
        "this file, and nothing runs that the spec does not print\n"
    ) in message
    assert (
        '  - api/db/migrations/0007_invoicing.sql: rule "printed in the spec": printed in the spec '
        f'({SPEC}:{line} (section "Migrations")), but there is no such file\n'
    ) in message
    assert not refusing.state.exists()  # no server was asked anything


def test_unterminated_fence_is_a_spec_error_citing_line_and_heading(refusing):
    path = refusing.root / SPEC
    lines = path.read_text(encoding="utf-8").split("\n")
    closing = max(i for i, line in enumerate(lines) if line.strip() == "```")
    opening = max(i for i, line in enumerate(lines[:closing]) if line.strip() == "```sql")
    del lines[closing]
    path.write_text("\n".join(lines), encoding="utf-8", newline="\n")
    result = refusing.in_process("db.drift")
    assert result.returncode == 1
    message = clean(result)
    assert message.startswith(
        f'{SPEC}:{opening + 1} (section "Optional objects"): the ```sql fence opened here is never closed'
    )
    assert "next step: close the code block" in message


# -- 3. concurrency ----------------------------------------------------------------------------


@pytest.mark.needs_pg_binaries
def test_four_concurrent_applies_all_succeed_and_equal_one_apply(workspace):
    setup_reset(workspace)
    single = catalog.snapshot_of(workspace.conninfo())
    dbname = workspace.backend.cluster.state().dbname
    with psycopg.connect(workspace.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    processes = [workspace.popen("db.apply") for _ in range(4)]
    outcomes = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    for code, out, err in outcomes:
        assert code == 0, err
        assert "apply: 7 files" in out
    assert catalog.snapshot_of(workspace.conninfo()) == single


@pytest.mark.needs_pg_binaries
def test_second_reset_while_one_runs_is_refused_and_the_first_completes(workspace):
    workspace.gated_migration("0008_gate.sql", "probe_gate")
    first = workspace.popen("db.reset")
    try:
        workspace.wait_entered(first)
        second = workspace("db.reset")
        assert second.returncode == 1
        message = clean(second)
        assert message.startswith(f"another db.reset of {workspace.state / 'cluster'} is running (pid ")
        assert "next step: wait for it to finish; nothing was changed by this one" in message
    finally:
        workspace.release()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert "probe_gate" in relations(workspace.conninfo())  # the first reset's cluster is whole


@pytest.mark.needs_pg_binaries
def test_down_and_applies_during_a_reset_are_refused_and_the_reset_completes(workspace):
    """db.down during a reset once removed the cluster under it (a traceback, half removed)."""
    workspace.gated_migration("0008_gate.sql", "probe_gate")
    first = workspace.popen("db.reset")
    try:
        workspace.wait_entered(first)
        for task in ("db.down", "db.apply", "db.reapply"):  # in process: the refusal is the point
            second = workspace.in_process(task)
            assert second.returncode == 1, (task, second.stdout)
            message = clean(second)
            assert message.startswith(
                f"another db.reset of {workspace.state / 'cluster'} is running (pid {first.pid}; lock "
            ), (task, message)
            assert "next step: wait for it to finish; nothing was changed by this one" in message
            assert (workspace.state / "cluster" / MARKER).is_file()
    finally:
        workspace.release()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert "probe_gate" in relations(workspace.conninfo())  # the reset's cluster is whole
    assert workspace.backend.cluster.is_running()


@pytest.mark.needs_pg_binaries
def test_reset_and_down_during_an_apply_are_refused_and_the_apply_completes(workspace):
    setup_reset(workspace)
    workspace.gated_migration("0008_gate.sql", "probe_apply")
    first = workspace.popen("db.apply")
    try:
        workspace.wait_entered(first)
        for task in (("db.reset",), ("db.reset", "--fast"), ("db.down",)):  # in process, as above
            second = workspace.in_process(*task)
            assert second.returncode == 1, (task, second.stdout)
            message = clean(second)
            assert message.startswith(
                f"another db.apply of {workspace.state / 'cluster'} is running (pid {first.pid}; lock "
            ), (task, message)
    finally:
        workspace.release()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert "apply: 8 files" in out
    assert "probe_apply" in relations(workspace.conninfo())


@pytest.mark.needs_pg_binaries
def test_a_reset_while_a_fast_reset_builds_its_template_is_refused(workspace):
    """The first --fast reset builds the template database; a second reset meanwhile must
    not clone the half-built template, nor remove the server under it."""
    setup_reset(workspace)
    workspace.gated_migration("0008_gate.sql", "probe_fast")
    first = workspace.popen("db.reset", "--fast")
    try:
        workspace.wait_entered(first)
        for second in (workspace.in_process("db.reset", "--fast"), workspace.in_process("db.reset")):
            assert second.returncode == 1
            message = clean(second)
            assert message.startswith(f"another db.reset of {workspace.state / 'cluster'} is running (pid ")
    finally:
        workspace.release()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert "probe_fast" in relations(workspace.conninfo())
    again = workspace.in_process("db.reset", "--fast")  # from the finished template
    assert again.returncode == 0, again.stderr
    assert "probe_fast" in relations(workspace.conninfo())


@pytest.mark.needs_pg_binaries
def test_fast_reset_with_a_session_open_on_the_template_is_a_clear_message(workspace):
    setup_reset(workspace)
    assert workspace.in_process("db.reset", "--fast").returncode == 0  # builds the template
    with psycopg.connect(workspace.conninfo("postgres")) as conn:
        (template,) = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'leaddb\\_tpl\\_%'"
        ).fetchone()
    with psycopg.connect(workspace.conninfo(template)):  # someone browsing the template
        held = workspace("db.reset", "--fast")
    assert held.returncode == 1
    message = clean(held)
    assert f"from '{template}': source database \"{template}\" is being accessed by other users" in message
    assert f"next step: close the sessions connected to '{template}'" in message
    assert workspace.in_process("db.reset", "--fast").returncode == 0  # once they are closed


# -- 4. crash ----------------------------------------------------------------------------------


def wait_until_gone(pid: int) -> None:
    """Until the killed process is reaped: a zombie postmaster still owns postmaster.pid."""
    deadline = time.monotonic() + WAIT
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"pid {pid} still exists"
        time.sleep(0.02)


@pytest.mark.needs_pg_binaries
@pytest.mark.linux_only("SIGKILLs the postmaster, then awaits it and its children through /proc")
def test_server_killed_mid_apply_then_reapply_equals_a_clean_apply(workspace, fresh_db):
    setup_reset(workspace)
    workspace.gated_migration("0008_crash.sql", "crash_probe")
    applying = workspace.popen("db.apply")
    workspace.wait_entered(applying, busy=3)  # the gate's holder outlives the postmaster's death
    postmaster = int((workspace.state / "cluster/data/postmaster.pid").read_text(encoding="utf-8").split()[0])
    listing = Path(f"/proc/{postmaster}/task/{postmaster}/children")  # needs CONFIG_PROC_CHILDREN
    children = [int(p) for p in listing.read_text(encoding="utf-8").split()] if listing.exists() else []
    os.kill(postmaster, signal.SIGKILL)
    out, err = applying.communicate(timeout=60)
    assert applying.returncode == 1
    assert "Traceback" not in err
    assert err.startswith("api/db/migrations/0008_crash.sql:4: the connection to the server was lost")
    assert "next step: start the server again and re-run the task" in err
    for pid in (postmaster, *children):  # a child still attached to the old shared memory
        wait_until_gone(pid)  # would make the new server refuse to start

    workspace.release()
    again = workspace.in_process("db.apply")  # starts the stopped cluster (crash recovery), then applies
    assert again.returncode == 0, again.stderr + (workspace.state / "cluster/server.log").read_text(
        encoding="utf-8", errors="replace"
    )
    assert "apply: 8 files" in again.stdout
    clean_db = fresh_db(None)
    workspace.gate.signal(clean_db)  # the gate passes at once on the session's server too
    try:
        runner.apply(clean_db, verdict.load(workspace.root))
    finally:
        workspace.gate.drop(clean_db)
    assert catalog.snapshot_of(workspace.conninfo()) == catalog.snapshot_of(clean_db)


def _pid_file(pid: int, status: str | None) -> str:
    lines = [str(pid), "/data", "1700000000", "5432", "/tmp", "127.0.0.1", "  1  2"]
    return "\n".join(lines + ([status] if status else [])) + "\n"


def _deny_readlink(monkeypatch) -> None:
    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "readlink", denied)


# Records every stop signal it receives; asked (a line on stdin), it says which. A signal sent
# before the question is pending by then, and its handler runs before the answer is made (the
# call of ``answer`` checks for pending handlers first): no sleep decides anything.
BYSTANDER = """
import signal, sys
received = []
for number in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
    signal.signal(number, lambda n, frame: received.append(signal.Signals(n).name))
def answer():
    return " ".join(received) or "none"
print("ready", flush=True)
sys.stdin.readline()
print(answer(), flush=True)
"""


@pytest.mark.linux_only("tells processes apart through /proc")
@pytest.mark.parametrize("cwd_readable", [True, False], ids=["cwd readable", "no ptrace rights"])
def test_stop_never_signals_a_process_that_recycled_a_crashed_servers_pid(
    tmp_path, monkeypatch, cwd_readable
):
    """After a crash or a reboot, postmaster.pid may name a pid the system has given to an
    unrelated process: stopping the cluster must leave that process alone, and not wait for it."""
    if not cwd_readable:
        _deny_readlink(monkeypatch)
    cluster = LocalCluster(tmp_path)
    cluster.data.mkdir()
    commands = []
    run = subprocess.run

    def recording(argv, *args, **kwargs):
        commands.append([str(a) for a in argv])
        return run(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording)
    bystander = subprocess.Popen(
        [sys.executable, "-c", BYSTANDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert bystander.stdout.readline().strip() == "ready"  # its handlers are installed
        (cluster.data / "postmaster.pid").write_text(
            _pid_file(bystander.pid, "ready"), encoding="utf-8", newline="\n"
        )
        cluster.stop("fast")
        assert not [c for c in commands if "stop" in c], commands  # no pg_ctl stop, so no wait on it
        answer, _ = bystander.communicate("report\n", timeout=WAIT)
        assert answer.strip() == "none", f"stop() signalled an unrelated process: {answer}"
        assert bystander.returncode == 0
    finally:
        if bystander.poll() is None:
            bystander.kill()
            bystander.wait()


@pytest.mark.posix_only("a stop signal a process can handle: on Windows os.kill ends it outright")
def test_the_bystander_would_tell_a_stop_signal(tmp_path):
    """The check above can fail: a signal sent before the question is in the answer."""
    bystander = subprocess.Popen(
        [sys.executable, "-c", BYSTANDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert bystander.stdout.readline().strip() == "ready"
    os.kill(bystander.pid, signal.SIGINT)
    answer, _ = bystander.communicate("report\n", timeout=WAIT)
    assert answer.strip() == "SIGINT"


@pytest.mark.needs_pg_binaries
@pytest.mark.linux_only("tells processes apart through /proc")
@pytest.mark.parametrize("cwd_readable", [True, False], ids=["cwd readable", "no ptrace rights"])
def test_stop_recognises_and_stops_this_clusters_own_server(workspace, monkeypatch, cwd_readable):
    setup_reset(workspace)
    cluster = workspace.backend.cluster
    assert cluster.is_running()
    if not cwd_readable:
        _deny_readlink(monkeypatch)  # only the postmaster's -D argument is left to go by
    cluster.stop("fast")
    assert not cluster.is_running()


# -- 5. timeouts and resources -----------------------------------------------------------------


@pytest.mark.needs_pg_binaries
def test_port_taken_while_stopped_moves_the_cluster_to_a_free_port(workspace):
    setup_reset(workspace)
    workspace.backend.cluster.stop()
    old_port = workspace.backend.cluster.state().port
    with socket.socket() as squatter:
        if os.name == "posix":  # on Windows SO_REUSEADDR would let another socket share the port
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen()
        result = workspace.in_process("db.apply")
        assert result.returncode == 0, result.stderr
    new_port = workspace.backend.cluster.state().port
    assert new_port != old_port
    assert f"local: port {old_port} is taken by another process; moving the cluster to port {new_port}" in (
        result.stdout
    )
    with psycopg.connect(workspace.conninfo()) as conn:
        assert conn.execute("SHOW port").fetchone()[0] == str(new_port)


@pytest.mark.needs_pg_binaries
def test_start_failure_reports_this_starts_server_log_lines(workspace):
    setup_reset(workspace)
    cluster = workspace.backend.cluster
    cluster.stop()
    with (cluster.data / "postgresql.conf").open("a", encoding="utf-8", newline="\n") as conf:
        conf.write("shared_buffers = 'plenty'\n")
    result = workspace.in_process("db.apply")
    assert result.returncode == 1
    message = clean(result)
    assert "the local PostgreSQL server exited during start-up" in message
    assert f"server log ({cluster.log})" in message
    assert 'invalid value for parameter "shared_buffers": "plenty"' in message
    assert "ready to accept connections" not in message  # the first boot's lines are not this start's
    assert "next step:" in message


@pytest.mark.posix_only(
    "chmod 0o500 makes a directory read-only; on Windows chmod only sets a file attribute"
)
@pytest.mark.needs_pg_binaries
def test_read_only_data_directory_is_a_clear_start_failure(workspace):
    setup_reset(workspace)
    cluster = workspace.backend.cluster
    cluster.stop()
    cluster.data.chmod(0o500)
    try:
        result = workspace.in_process("db.apply")
    finally:
        cluster.data.chmod(0o700)
    assert result.returncode == 1
    message = clean(result)
    assert 'could not create lock file "postmaster.pid": Permission denied' in message
    assert workspace.in_process("db.apply").returncode == 0  # writable again: it starts


@pytest.fixture
def unstarted(project_dir):
    """A workspace whose tasks run in process and must start no cluster (so none to stop)."""
    ws = Workspace(project_dir)
    yield ws
    assert not list(ws.root.rglob("postmaster.pid")), "a cluster was started"
    SharedWorkspace.remove(ws)


def test_unwritable_state_directory_is_a_clear_message(unstarted):
    workspace = unstarted
    blocker = workspace.root / "not-a-directory"
    blocker.write_bytes(b"a file where the state directory should go\n")
    result = workspace.in_process("db.reset", env={"LEADDB_STATE_DIR": str(blocker / "state")})
    assert result.returncode == 1
    message = clean(result)
    assert message.startswith(
        f"cannot create the private directory {blocker / 'state'}: {blocker} exists and is not a directory"
    )
    assert "next step: point LEADDB_STATE_DIR at a directory of your own" in message
    assert blocker.read_bytes().startswith(b"a file")


@pytest.fixture
def full_disk():
    """A 4 MB tmpfs: too small for a cluster."""
    if not platforms.running_as_root():
        if os.environ.get("CI"):
            pytest.fail("mounting a tmpfs needs root (CI is set: this test must run)", pytrace=False)
        pytest.skip("mounting a small tmpfs needs root")
    full = Path(tempfile.mkdtemp(prefix="leaddb-full-"))
    full.chmod(0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "leaddb-full", str(full)], check=True)
    yield full
    subprocess.run(["umount", str(full)], check=False)
    shutil.rmtree(full, ignore_errors=True)


@pytest.mark.needs_pg_binaries
@pytest.mark.linux_only("fills a small tmpfs")
def test_full_disk_during_initdb_is_a_clear_message(workspace, full_disk, tmp_path):
    """The user's shared directory (where initdb writes the pristine) on a full disk: no RAM disk,
    the temp dir full; a user without a pristine yet."""
    program = (
        "from pathlib import Path; import leaddb.statedir as statedir;"
        "statedir.RAM_DISK = Path('/nonexistent');"
        "from invoke.main import program; program.run(['invoke', 'db.reset'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=workspace.root,
        env={**workspace.env, "TMPDIR": str(full_disk), "LEADDB_CACHE_DIR": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    message = clean(result)
    assert message.startswith("initdb failed")
    assert "No space left on device" in message
    assert "next step:" in message


@pytest.mark.needs_pg_binaries
@pytest.mark.linux_only("fills a small tmpfs")
def test_full_disk_during_the_copy_of_the_pristine_is_a_clear_message(workspace, full_disk):
    state = full_disk / "state"
    result = workspace.in_process("db.reset", env={"LEADDB_STATE_DIR": str(state)})
    assert result.returncode == 1
    message = clean(result)
    assert message.startswith(
        f"cannot create the local cluster under {state}: [Errno 28] No space left on device"
    )
    assert "next step: point LEADDB_STATE_DIR at a writable directory on a disk with room" in message
    assert [p.name for p in state.iterdir()] == ["reset.lock"]  # the partial copy is not left to fill it


def test_missing_postgres_binaries_name_what_to_install(workspace):
    # PATH without the binaries and pg_config; the Debian package directory hidden as well
    program = (
        "import leaddb.backends.cluster as cluster; cluster.PACKAGED_BINDIRS = ();"
        "from invoke.main import program; program.run(['invoke', 'db.reset'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=workspace.root,
        env={**workspace.env, "PATH": str(workspace.root / "no-bin")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    message = clean(result)
    assert message.startswith("PostgreSQL 15 server binary 'initdb' not found on PATH or via pg_config")
    assert "apt-get install postgresql-15" in message and "--backend docker" in message
    assert not (workspace.state / "cluster").exists()  # nothing half-made


# -- 6. ownership and secrets ------------------------------------------------------------------


@pytest.mark.parametrize("task", ["db.reset", "db.down", "db.apply"])
def test_a_state_directory_without_the_marker_is_never_touched(unstarted, task):
    workspace = unstarted
    foreign = workspace.backend.state_dir / "cluster"  # the state directory made as the tool does
    foreign.mkdir()
    (foreign / "precious.txt").write_bytes(b"not yours\n")
    result = workspace.in_process(task)
    assert result.returncode == 1
    message = clean(result)
    assert f"{foreign} exists but has no {MARKER} marker: it was not created by this tool" in message
    assert "next step: refusing to touch it" in message
    assert sorted(p.name for p in foreign.iterdir()) == ["precious.txt"]


@pytest.fixture
def password_login(server):
    """A login role of the test's own with a password and CREATEDB on the session's server,
    reached over TCP as a ``--dsn`` user reaches a server: (host, port, role, password). Dropped
    afterwards, with the databases it owns."""
    host, port = tcp_address(server.conninfo("postgres"))
    role, password = f"leaddb_pw_{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        try:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
        except psycopg.errors.InsufficientPrivilege as exc:  # only where LEADDB_TEST_DSN's role is not
            if os.environ.get("CI"):  # allowed to: CI's servers are the suite's own
                raise
            pytest.skip(f"needs a role that may CREATE ROLE on the test server: {str(exc).strip()}")
    yield host, port, role, password
    as_role = make_conninfo(host=host, port=port, user=role, password=password, dbname="postgres")
    with psycopg.connect(as_role, autocommit=True) as conn:  # an owner may drop its databases
        owned = conn.execute(
            "SELECT datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = %s)",
            (role,),
        ).fetchall()
        for (dbname,) in owned:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_dsn_password_never_appears_in_output_or_files(workspace, password_login):
    host, port, role, password = password_login
    dbname = f"ws_secret_{os.getpid()}"
    dsn = f"host={host} port={port} user={role} password={password} dbname={dbname}"
    uri = f"postgresql://{role}:{password}@{host}:{port}/{dbname}"
    wrong_db = dsn.replace(f"dbname={dbname}", "dbname=no_such_db")
    wrong_password = uri.replace(password, password[::-1])

    def run(task: str, conninfo: str, expect: int, *, child: bool = True) -> str:
        argv = (task, "--backend", "dsn", "--dsn", conninfo)
        result = workspace(*argv) if child else workspace.in_process(*argv)
        assert result.returncode == expect, (task, result.stdout, result.stderr)
        clean(result)
        return result.stdout + result.stderr

    # the reset and every failure (where libpq's own messages are shown) as a user runs them, in a
    # child whose whole output is read; the tasks that succeed print only what leaddb prints,
    # which the same tasks run in this process capture (tests/workspace.py)
    outputs = [run("db.reset", dsn, 0)]
    for task in ("db.apply", "db.reapply", "db.introspect", "db.drift", "db.down"):
        outputs.append(run(task, uri, 0, child=False))
    outputs.append(run("db.apply", wrong_db, 1))
    outputs.append(run("db.drift", wrong_password, 1))
    outputs.append(run("db.apply", f"host={host} password={password} junk", 1))
    workspace.write("0008_probe.sql", compliant("0008_probe.sql", "CREATE TABLE probe (x no_such_type);\n"))
    outputs.append(run("db.apply", dsn, 1))
    text = "\n".join(outputs)
    assert 'database "no_such_db" does not exist' in text  # the failures did say what went wrong
    assert "password authentication failed" in text
    assert password not in text
    for path in workspace.root.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def test_compose_binds_to_loopback_and_never_trusts_tcp(project_dir):
    for environ in ({}, {"POSTGRES_PORT": "6543"}):
        service = compose.load_service(project_dir, environ=environ)
        assert service.ports, "the service publishes its port"
        assert {p.host_ip for p in service.ports} == {"127.0.0.1"}
        env = service.environment
        assert env.get("POSTGRES_HOST_AUTH_METHOD", "scram-sha-256") != "trust"
        assert "trust" not in env.get("POSTGRES_INITDB_ARGS", "")
        assert env.get("POSTGRES_PASSWORD"), "without a password the image would need trust"
        assert "trust" not in json.dumps(service.raw.get("command") or "")


@pytest.mark.needs_pg_binaries
def test_the_pg_ctl_lifecycle_windows_uses_starts_stops_and_tells_a_running_server(workspace, monkeypatch):
    """Windows starts and stops the server through pg_ctl (POSIX does it itself): that path,
    run here with pg_ctl's own waits, on the same cluster."""
    setup_reset(workspace)
    cluster = workspace.backend.cluster
    monkeypatch.setattr(platforms, "can_identify_postmaster", lambda: False)
    assert cluster.is_running()
    assert cluster.stop("fast") and not cluster.is_running()
    cluster.start()
    assert cluster.is_running()
    with psycopg.connect(workspace.conninfo()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert cluster.stop("immediate") and not cluster.is_running()
