"""The tasks as a user runs them: exit codes, one message, no traceback.

``workspace``: the tasks on a local cluster of their own (the local backend itself).
``on_test_server``: the tasks with ``--backend dsn`` on a database of the test's own on the
session's server, whichever it is (local binaries, Docker, or LEADDB_TEST_DSN).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from printed import edit_printed
from workspace import in_process, load_tasks

from leaddb import janitor
from leaddb.backends.local import scratch_root

PROJECT_FILES = ("tasks.py", "docker-compose.yml", "Technical-Architecture-Specification.md")


def project_copy(project_dir: Path, env: dict[str, str]):
    """``python -m invoke …`` in a fresh copy of the project, with ``env`` added."""
    root = Path(tempfile.mkdtemp(prefix="leaddb-ws-"))
    for name in PROJECT_FILES:
        shutil.copy(project_dir / name, root / name)
    shutil.copytree(project_dir / "api", root / "api")
    shutil.copytree(project_dir / "docs", root / "docs")
    root.chmod(0o755)

    def invoke(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=root,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def here(*args: str) -> subprocess.CompletedProcess:
        """The same task run in this process (tests/workspace.py)."""
        return in_process(root, load_tasks(root), {**os.environ, **env}, *args)

    invoke.root = root
    invoke.in_process = here
    return invoke


@pytest.fixture
def workspace(project_dir):
    """A copy of the project with a local-cluster state dir of its own."""
    state = Path(tempfile.mkdtemp(prefix="leaddb-ws-state-", dir=scratch_root()))  # 0700, ours
    invoke = project_copy(project_dir, {"LEADDB_STATE_DIR": str(state), "INVOKE_DB_BACKEND": "local"})
    invoke.state = state
    yield invoke
    invoke.in_process("db.down")  # a clean-up, not a proof: no child's start-up
    shutil.rmtree(invoke.root, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def on_test_server(project_dir, server):
    """A copy of the project whose tasks use the session's server (``--backend dsn``), on a
    database of the test's own: ``db.reset`` creates it, the fixture drops it afterwards."""
    dbname = f"ws_{secrets.token_hex(6)}"
    invoke = project_copy(project_dir, {"INVOKE_DB_BACKEND": "dsn", "INVOKE_DB_DSN": server.conninfo(dbname)})
    invoke.conninfo = server.conninfo(dbname)
    yield invoke
    shutil.rmtree(invoke.root, ignore_errors=True)
    with janitor.maintenance(server.conninfo("postgres")) as conn:
        janitor.drop_database(conn, dbname)


@pytest.mark.needs_pg_binaries
def test_reset_reapply_introspect_drift_down(workspace):
    reset = workspace("db.reset")
    assert reset.returncode == 0, reset.stderr
    assert "backend: local" in reset.stdout.splitlines()[0]
    for phase in ("copy pristine", "start", "apply", "total"):  # initdb too, if no checkout made one yet
        assert phase in reset.stdout
    reapply = workspace("db.reapply")
    assert reapply.returncode == 0, reapply.stderr
    introspect = workspace("db.introspect")
    assert introspect.returncode == 0, introspect.stderr
    assert "lead_duplicate_events" in introspect.stdout and "skipped on purpose" in introspect.stdout
    assert "100%" in introspect.stdout
    drift = workspace("db.drift")
    assert drift.returncode == 0, drift.stderr
    assert "drift: none" in drift.stdout
    assert "the spec's schema from the cache" in drift.stdout  # introspect built it
    down = workspace("db.down")
    assert down.returncode == 0 and "removed" in down.stdout


def test_non_idempotent_statement_exits_4_naming_file_line_and_statement(on_test_server):
    assert on_test_server("db.reset").returncode == 0
    leads = on_test_server.root / "api/db/migrations/0006_leads.sql"
    text = leads.read_text(encoding="utf-8")
    lines_before = text[: text.rindex("COMMIT;")].count("\n")
    # a change to the schema: in the spec first, then the file, byte for byte
    extra = "CREATE INDEX leads_extra_idx ON leads (email);\nCOMMIT;"
    edit_printed(on_test_server.root, leads.name, "COMMIT;", extra)
    assert on_test_server("db.apply").returncode == 0  # first apply of the new statement succeeds
    result = on_test_server("db.reapply")
    assert result.returncode == 4
    assert result.stderr.startswith("NON_IDEMPOTENT_MIGRATION: api/db/migrations/0006_leads.sql:")
    assert f"0006_leads.sql:{lines_before + 1}:" in result.stderr
    assert "CREATE INDEX leads_extra_idx ON leads (email)" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_mount_and_declaration_exit_2_citing_the_section(workspace):
    for name, dropped in (
        ("docker-compose.yml", "docker-entrypoint-initdb.d"),
        ("Technical-Architecture-Specification.md", "Migrations directory:"),
    ):
        path = workspace.root / name
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text(
            "".join(line for line in lines if dropped not in line), encoding="utf-8", newline="\n"
        )
    for task in ("db.reset", "db.apply", "db.reapply"):
        result = workspace(task)
        assert result.returncode == 2, (task, result.stderr)
        assert result.stderr.startswith("MIGRATION_PATH_UNSPECIFIED: ")
        assert '"Migrations: directory and tooling"' in result.stderr
        assert "Traceback" not in result.stderr


def test_drift_exits_3_naming_only_the_changed_index(on_test_server):
    assert on_test_server("db.reset").returncode == 0
    # the live database gets a changed index; the spec keeps the original
    with psycopg.connect(on_test_server.conninfo) as conn:
        conn.execute("DROP INDEX leads_status_received_at_idx")
        conn.execute("CREATE INDEX leads_status_received_at_idx ON leads (status)")
    result = on_test_server("db.drift")
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("SCHEMA_DRIFT: 1 difference(s)")
    assert "index leads_status_received_at_idx: definition differs" in result.stderr


def test_status_and_erd_tasks_exit_codes_and_the_stale_diagram(on_test_server):
    # the steps between the checks run in this process (tests/workspace.py): each task meets a
    # child in this test or in test_reset_reapply_introspect_drift_down
    assert on_test_server.in_process("db.reset").returncode == 0
    status = on_test_server("db.status", "--json", "status.json")
    assert status.returncode == 0, status.stderr
    assert "status: 7 migration files: 7 applied" in status.stdout
    written = json.loads((on_test_server.root / "status.json").read_text(encoding="utf-8"))
    assert written["exit_code"] == 0 and {f["state"] for f in written["files"]} == {"applied"}
    erd = on_test_server("db.erd")
    assert erd.returncode == 0, erd.stderr
    committed = Path(__file__).resolve().parent.parent / "docs/schema.md"
    assert (on_test_server.root / "docs/schema.md").read_bytes() == committed.read_bytes()
    with psycopg.connect(on_test_server.conninfo) as conn:
        conn.execute("DROP TABLE invoice_line_items")
    pending = on_test_server("db.status")
    assert pending.returncode == 6, pending.stderr
    assert pending.stderr.startswith("MIGRATIONS_PENDING: not every migration is on this database: ")
    assert "0007_invoices.sql (partial)" in pending.stderr and "Traceback" not in pending.stderr
    # a stale committed diagram fails drift (and so verify), naming the command that fixes it
    schema_md = on_test_server.root / "docs/schema.md"
    text = schema_md.read_text(encoding="utf-8").replace("bigint amount_cents", "int amount")
    schema_md.write_text(text, encoding="utf-8", newline="\n")
    assert on_test_server.in_process("db.apply").returncode == 0
    drift = on_test_server("db.drift")
    assert drift.returncode == 3, drift.stderr
    assert drift.stderr.startswith("SCHEMA_DRIFT: docs/schema.md is stale: first difference at line")
    assert "run `invoke db.erd`" in drift.stderr and "Traceback" not in drift.stderr
    assert on_test_server.in_process("db.erd").returncode == 0
    assert on_test_server.in_process("db.drift").returncode == 0


# issue 17: a file the spec does not print passed every task; its guarded dynamic SQL made a
# superuser and ran a shell command through COPY … TO PROGRAM
UNPRINTED = """-- migration: api/db/migrations/0008_x.sql
BEGIN;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'x') THEN
        EXECUTE 'CREATE ROLE x SUPERUSER LOGIN';
        EXECUTE 'COPY (SELECT 1) TO PROGRAM ''id''';
    END IF;
END
$$;
COMMIT;
"""
NOWHERE = "host=127.0.0.1 port=1 dbname=leadgen user=postgres connect_timeout=5"


@pytest.mark.parametrize(
    "task",
    [  # every task reads the files through verdict.load (apply, reapply, lint: tests/unit)
        ("db.reset",),
        ("db.bench", "--runs", "1"),
        ("db.verify", "--bench-runs", "1"),
        ("db.drift",),
        ("db.introspect",),
        ("db.status",),
    ],
    ids=lambda task: " ".join(task),
)
def test_a_file_the_spec_does_not_print_is_refused_before_any_server_is_touched(project_dir, task):
    """Against a server nothing listens on: a task that got as far as connecting would say so.
    db.reset as a user runs it (a child); the other tasks in this process, the same tasks.py."""
    invoke = project_copy(project_dir, {"INVOKE_DB_BACKEND": "dsn", "INVOKE_DB_DSN": NOWHERE})
    try:
        (invoke.root / "api/db/migrations/0008_x.sql").write_text(UNPRINTED, encoding="utf-8", newline="\n")
        result = invoke(*task) if task == ("db.reset",) else invoke.in_process(*task)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "Traceback" not in output and "cannot connect" not in output
        assert result.stderr.startswith("3 violations of the migration rules; nothing was applied:\n"), output
        assert (
            '  - api/db/migrations/0008_x.sql: rule "printed in the spec": the spec prints no block for this '
            "file, and nothing runs that the spec does not print\n"
        ) in result.stderr
        for line in (6, 7):
            assert (
                f'  - api/db/migrations/0008_x.sql:{line}: rule "schema only": EXECUTE of SQL built at run '
                "time (in a DO block)"
            ) in result.stderr
    finally:
        shutil.rmtree(invoke.root, ignore_errors=True)
