"""The tasks as a user runs them: exit codes, one message, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from leaddb.backends.local import LocalBackend, scratch_root

PROJECT_FILES = ("tasks.py", "docker-compose.yml", "Technical-Architecture-Specification.md")


@pytest.fixture
def workspace(project_dir):
    """A copy of the project with a local-cluster state dir of its own."""
    root = Path(tempfile.mkdtemp(prefix="leaddb-ws-"))
    for name in PROJECT_FILES:
        shutil.copy(project_dir / name, root / name)
    shutil.copytree(project_dir / "api", root / "api")
    state = Path(tempfile.mkdtemp(prefix="leaddb-ws-state-", dir=scratch_root()))  # 0700, ours
    root.chmod(0o755)
    env = {**os.environ, "LEADDB_STATE_DIR": str(state), "INVOKE_DB_BACKEND": "local"}

    def invoke(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    invoke.root = root
    invoke.state = state
    yield invoke
    invoke("db.down")
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)


def test_reset_reapply_introspect_drift_down(workspace):
    reset = workspace("db.reset")
    assert reset.returncode == 0, reset.stderr
    assert "backend: local" in reset.stdout.splitlines()[0]
    for phase in ("initdb", "start", "apply", "total"):
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
    down = workspace("db.down")
    assert down.returncode == 0 and "removed" in down.stdout


def test_non_idempotent_statement_exits_4_naming_file_line_and_statement(workspace):
    assert workspace("db.reset").returncode == 0
    leads = workspace.root / "api/db/migrations/0006_leads.sql"
    text = leads.read_text(encoding="utf-8")
    lines_before = text[: text.rindex("COMMIT;")].count("\n")
    leads.write_text(
        text.replace("COMMIT;", "CREATE INDEX leads_extra_idx ON leads (email);\nCOMMIT;"),
        encoding="utf-8",
        newline="\n",
    )
    assert workspace("db.apply").returncode == 0  # first apply of the new statement succeeds
    result = workspace("db.reapply")
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


def test_drift_exits_3_naming_only_the_changed_index(workspace):
    assert workspace("db.reset").returncode == 0
    # the live database gets a changed index; the spec keeps the original
    with psycopg.connect(LocalBackend(workspace.root, state_dir=workspace.state).conninfo()) as conn:
        conn.execute("DROP INDEX leads_status_received_at_idx")
        conn.execute("CREATE INDEX leads_status_received_at_idx ON leads (status)")
    result = workspace("db.drift")
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("SCHEMA_DRIFT: 1 difference(s)")
    assert "index leads_status_received_at_idx: definition differs" in result.stderr
