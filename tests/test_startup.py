"""A task loads only what it uses: each command runs as a user runs it (``python -m invoke``),
under ``python -X importtime``, and the modules it imported are held against what it must not
need. A heavy import put back at the top of a module the tasks share fails here.

The server tasks run with ``--backend dsn`` against a port nothing listens on, so they stop at
the connection, after they have imported what they import; one apply runs whole, against the
suite's server, for what it imports to print its table.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOWHERE = "host=127.0.0.1 port=1 dbname=leadgen user=postgres connect_timeout=5"

# packages no task below needs
EVERYWHERE_UNUSED = {"docker", "matplotlib"}
# the library's rooms that need a server, and the display rooms of the tasks that do not run here
SERVER = {"psycopg", "leaddb.backends", "leaddb.runner", "leaddb.catalog", "leaddb.janitor"}
INSPECTION = {
    "leaddb.drift",
    "leaddb.status",
    "leaddb.objects",
    "leaddb.erd",
    "leaddb.bench",
    "leaddb.report",
}

IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$")


def invoke(options: list[str], args, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python OPTIONS -m invoke ARGS`` in ``cwd``, as a user runs it."""
    return subprocess.run(
        [sys.executable, *options, "-m", "invoke", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )


def imported(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``python -m invoke ARGS`` in the project (``env`` added to the environment); what it
    printed, and every module it imported. Each run has an empty cache (``LEADDB_CACHE_DIR``)
    unless ``env`` names one: what a first run, or a run after any file changed, loads."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="leaddb-startup-") as fresh:
        env = {
            **os.environ,
            "PYTHONPATH": path,
            "LEADDB_CACHE_DIR": os.path.join(fresh, "cache"),
            **(env or {}),
        }
        done = invoke(["-X", "importtime"], args, ROOT, env)
    names = set()
    for line in done.stderr.splitlines():
        found = IMPORT_LINE.match(line)
        if found:
            names.add(found[1])
    assert names, f"no -X importtime output:\n{done.stderr[-2000:]}"
    return done, names


def loaded(names: set[str], roots: set[str]) -> set[str]:
    """The ``roots`` (packages or modules) of which ``names`` holds the module or a submodule."""
    return {r for r in roots if any(n == r or n.startswith(r + ".") for n in names)}


def test_listing_the_tasks_loads_none_of_the_library_s_dependencies():
    done, names = imported("--list")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "db.apply" in done.stdout
    heavy = {"psycopg", "pglast", "markdown_it", "rich", "dotenv"} | EVERYWHERE_UNUSED
    assert loaded(names, heavy | SERVER | INSPECTION | {"leaddb.migrations", "leaddb.compose"}) == set()


def test_lint_loads_the_parsers_and_no_server_code():
    done, names = imported("db.lint")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "lint: 7 migration files" in done.stdout
    parsers = {"pglast", "markdown_it", "leaddb.rules"}
    assert loaded(names, parsers) == parsers
    assert loaded(names, EVERYWHERE_UNUSED | SERVER | INSPECTION | {"rich"}) == set()  # it prints no table


def test_lint_on_unchanged_files_loads_neither_parser_nor_the_rules(tmp_path):
    """The second run finds the first's verdict (and the spec's reading) in the cache."""
    env = {"LEADDB_CACHE_DIR": str(tmp_path / "cache")}
    runs = [imported("db.lint", env=env) for _ in range(2)]
    for done, _ in runs:
        assert done.returncode == 0, done.stderr[-2000:]
        assert "lint: 7 migration files" in done.stdout
    parsers = {"pglast", "markdown_it", "leaddb.rules", "leaddb.lint"}
    assert loaded(runs[0][1], parsers) == parsers
    assert loaded(runs[1][1], parsers) == set()


@pytest.mark.parametrize(
    ("task", "needed", "unused"),
    [
        # apply checks every file with the rules (pglast) before it connects
        ("db.apply", {"psycopg", "pglast", "leaddb.backends.dsn"}, INSPECTION | {"leaddb.backends.local"}),
        ("db.status", {"psycopg", "leaddb.status", "leaddb.catalog"}, {"leaddb.erd", "leaddb.bench"}),
        ("db.erd", {"psycopg", "leaddb.erd"}, {"pglast", "leaddb.drift", "leaddb.status", "leaddb.bench"}),
    ],
)
def test_a_server_task_loads_what_it_uses_and_not_the_rest(task, needed, unused):
    done, names = imported(task, "--backend", "dsn", "--dsn", NOWHERE)
    assert done.returncode == 1, f"{task} reached a server at port 1?\n{done.stdout}\n{done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr
    assert loaded(names, needed) == needed
    assert loaded(names, unused | EVERYWHERE_UNUSED | {"leaddb.backends.docker"}) == set()


def test_apply_prints_its_table_without_importing_rich(fresh_db):
    """The per-file table is drawn by the tool in rich's look: rich's import, console and layout
    cost more than the rest of the command on 7 files."""
    done, names = imported("db.apply", "--backend", "dsn", "--dsn", fresh_db())
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "┃ file " in done.stdout and "0001_" in done.stdout
    assert loaded(names, {"rich"}) == set()


def test_auto_on_a_machine_without_a_docker_socket_does_not_load_docker_py(tmp_path):
    """The default backend, ``auto``, asks whether an engine answers: where its socket is not
    even there, the answer needs no docker-py."""
    state = tmp_path / "state"  # an empty state directory: no local cluster, so apply stops at start
    state.mkdir(mode=0o700)
    done, names = imported(
        "db.apply",
        "--backend",
        "auto",
        env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "LEADDB_STATE_DIR": str(state)},
    )
    assert "backend: local (auto: no Docker engine answered at unix://" in done.stdout, done.stdout
    assert done.returncode == 1, done.stderr[-2000:]
    assert loaded(names, {"psycopg", "leaddb.backends.local"}) == {"psycopg", "leaddb.backends.local"}
    assert loaded(names, {"docker"}) == set()


def test_a_docker_reset_reaches_its_container_start_without_psycopg(tmp_path):
    """`db.reset --backend docker` against an engine that is not there stops where it would
    create the container: by then it has loaded the migrations (their rules), the compose file
    and docker-py, but not psycopg or rich, which it imports while the container boots."""
    done, names = imported(
        "db.reset", "--backend", "docker", env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    )
    assert "no Docker engine answered at unix://" in done.stdout + done.stderr, done.stdout + done.stderr
    assert done.returncode == 1
    assert loaded(names, {"docker", "pglast", "leaddb.backends.docker"}) == {
        "docker",
        "pglast",
        "leaddb.backends.docker",
    }
    assert loaded(names, {"psycopg", "rich", "leaddb.runner"}) == set()


@pytest.mark.parametrize("dont_write", [False, True])
def test_a_command_writes_the_bytecode_of_what_it_imports_as_python_would(tmp_path, dont_write):
    """invoke turns bytecode writing off before it loads tasks.py: without tasks.py handing the
    choice back to Python (-B, PYTHONDONTWRITEBYTECODE), every command compiled the library and
    its dependencies from source again."""
    shutil.copy2(ROOT / "tasks.py", tmp_path / "tasks.py")
    shutil.copytree(ROOT / "leaddb", tmp_path / "leaddb", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    if dont_write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = invoke([], ["--list"], tmp_path, env)
    assert done.returncode == 0, done.stderr[-2000:]
    written = sorted(p.name for p in (tmp_path / "leaddb").glob("__pycache__/workflow.*.pyc"))
    assert (written == []) if dont_write else written, written
