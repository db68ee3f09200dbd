"""What the backend creates is what Compose v2 makes and manages, in both directions, with the
real Compose v2 CLI (`docker compose`; CI installs it: .ci/compose-plugin.sh):

- `docker compose ps`, `exec` and `down -v` see and remove what `db.reset` created;
- `docker compose up -d` right after `db.reset` keeps the container: same id, not restarted,
  data kept (Compose finds the labels it would have written itself);
- after `docker compose up -d --wait`, `db.status`, `db.reset` and `db.down` work on Compose's
  own container.

Without a Compose v2 CLI these skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from docker_support import GOOD_MIGRATIONS, write_migrations

from leaddb.backends.docker import compose_cli
from leaddb.backends.docker.service import LABEL
from leaddb.migrations import discover

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def compose_v2() -> list[str]:
    """``docker compose`` when it is Compose v2; CI fails without it, elsewhere the tests skip."""
    docker = shutil.which("docker")
    version = ""
    if docker:
        done = subprocess.run([docker, "compose", "version", "--short"], capture_output=True, text=True)
        version = done.stdout.strip().removeprefix("v") if done.returncode == 0 else ""
    if not version.startswith("2."):
        reason = f"`docker compose` is {'version ' + version if version else 'not installed'}, not Compose v2"
        if os.environ.get("CI"):
            pytest.fail(f'{reason} (CI installs it: eval "$(bash .ci/compose-plugin.sh)")', pytrace=False)
        pytest.skip(reason)
    return [docker, "compose"]


@pytest.fixture
def compose(compose_v2, make_backend, project, project_name):
    """Runs `docker compose ARGS` in the project with the settings the backend uses; returns
    its output (stdout and stderr: Compose reports progress on stderr)."""
    backend = make_backend()
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project_name,
        "POSTGRES_IMAGE": backend.service.image,
        "POSTGRES_PORT": str(backend.port.host_port),
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            [*compose_v2, *args], cwd=project, env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    run.env = env
    return run


def state(docker_client, container_id: str) -> tuple:
    attrs = docker_client.api.inspect_container(container_id)
    return attrs["Id"], attrs["State"]["StartedAt"], attrs["RestartCount"], attrs["State"]["Status"]


def test_compose_up_after_reset_keeps_the_container_running_with_its_data(
    compose, make_backend, project, project_name, docker_client
):
    """And `docker compose ps`, `exec` and `down -v` then manage the container reset created
    (the same one: `up` kept it)."""
    backend = make_backend()
    backend.reset(discover(project / "api" / "db" / "migrations"))
    before = state(docker_client, backend.resources.container().id)
    labels = docker_client.api.inspect_container(before[0])["Config"]["Labels"]
    # the hash is Compose's own, and the image label the image's id, as Compose writes them
    answer = compose_cli.ask(backend.service, compose.env).answer()
    assert answer.from_compose, answer.reason
    assert labels[LABEL + "config-hash"] == answer.config_hash
    assert labels[LABEL + "image"] == docker_client.images.get(backend.service.image).id
    with psycopg.connect(backend.conninfo(), autocommit=True) as conn:
        conn.execute("INSERT INTO widgets VALUES (1, 'kept')")

    output = compose("up", "-d")
    assert "Recreate" not in output and "Running" in output, output
    after = state(docker_client, before[0])
    assert after == before  # same id, same start, no restart, still running
    assert after[2] == 0 and after[3] == "running"
    with psycopg.connect(backend.conninfo(), connect_timeout=5) as conn:
        assert conn.execute("SELECT name FROM widgets").fetchall() == [("kept",)]

    container = docker_client.containers.get(f"{project_name}-postgres-1")
    assert container.id == before[0]
    assert compose("ps", "-q").split() == [container.id]
    user, db = backend.user, backend.dbname
    count = compose(
        "exec", "-T", "postgres", "psql", "-U", user, "-d", db, "-tAc", "SELECT count(*) FROM widgets"
    )
    assert count.strip() == "1"
    compose("down", "-v")
    assert docker_client.containers.list(all=True, filters={"name": f"{project_name}-postgres-1"}) == []
    assert docker_client.volumes.list(filters={"name": f"{project_name}_pgdata"}) == []


@pytest.fixture
def real_project(project, compose, monkeypatch):
    """The repository's spec, migrations and schema snapshot in the throwaway project, and the
    environment the tasks read (the project name, image and port the `compose` fixture uses)."""
    from leaddb.spec import SPEC_FILENAME

    shutil.copy(REPO / SPEC_FILENAME, project / SPEC_FILENAME)
    shutil.rmtree(project / "api" / "db" / "migrations")
    shutil.copytree(REPO / "api" / "db" / "migrations", project / "api" / "db" / "migrations")
    shutil.copy(REPO / "api" / "db" / "schema.snapshot.json", project / "api" / "db" / "schema.snapshot.json")
    for name in ("COMPOSE_PROJECT_NAME", "POSTGRES_IMAGE", "POSTGRES_PORT"):
        monkeypatch.setenv(name, compose.env[name])
    return project


def test_the_tasks_work_on_the_container_compose_up_made(compose, real_project, project_name, docker_client):
    from leaddb import workflow

    compose("up", "-d", "--wait", "postgres")
    (made,) = docker_client.containers.list(filters={"label": f"{LABEL}project={project_name}"})
    options = workflow.Options(backend="docker", project_dir=real_project)

    found = workflow.status(options)  # raises unless every file is applied
    assert found is not None

    workflow.reset(options)
    (ours,) = docker_client.containers.list(all=True, filters={"label": f"{LABEL}project={project_name}"})
    assert ours.id != made.id and ours.name == f"{project_name}-postgres-1"
    workflow.status(options)

    message = workflow.down(options)
    assert f"container {project_name}-postgres-1" in message and f"volume {project_name}_pgdata" in message
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL}project={project_name}"}) == []
    assert docker_client.volumes.list(filters={"label": f"{LABEL}project={project_name}"}) == []


def test_a_reset_says_what_happens_where_no_compose_cli_answers(make_backend, project, capsys, monkeypatch):
    """No `docker` on PATH: this tool's own hash, and one line saying a later `docker compose up`
    recreates the container (the volume and its data kept)."""
    write_migrations(project / "api" / "db" / "migrations", GOOD_MIGRATIONS)
    backend = make_backend(PATH=str(project / "no-such-bin"))
    backend.reset(discover(project / "api" / "db" / "migrations"))
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if "did not answer" in line]
    assert line.startswith("note: `docker compose` did not answer (")
    assert "a later `docker compose up` recreates it once (a restart; same volume, data kept)" in line
    labels = backend.resources.container().attrs["Labels"]
    assert labels[LABEL + "config-hash"] == compose_cli.own_hash(backend.service)
    assert labels[LABEL + "version"] == compose_cli.CHECKED_VERSION
