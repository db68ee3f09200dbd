"""What the backend creates is what Compose manages: `ps`, `exec` and `down -v` see it.

Uses `docker compose` (v2) when the CLI has it, else Debian's `docker-compose` (v1, which
reads the same labels; `.ci/run` installs it). v1 does not know the top-level `name:` key,
so the project is named with `-p`, as the backend is.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from docker_support import GOOD_MIGRATIONS, write_migrations

from leaddb.migrations import discover

pytestmark = pytest.mark.docker


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    if shutil.which("docker-compose"):
        return [shutil.which("docker-compose")]
    if os.environ.get("CI"):
        pytest.fail("neither `docker compose` nor `docker-compose` is installed (CI installs docker-compose)")
    pytest.skip("no Compose CLI installed")


def test_compose_ps_exec_and_down_manage_what_reset_created(
    make_backend, project, project_name, docker_client
):
    compose = compose_command()
    if compose[-1].endswith("docker-compose"):  # v1: no top-level `name:`
        path = project / "docker-compose.yml"
        text = path.read_text(encoding="utf-8")
        path.write_text(
            "".join(line for line in text.splitlines(True) if not line.startswith("name:")),
            encoding="utf-8",
            newline="\n",
        )
    write_migrations(project / "api" / "db" / "migrations", GOOD_MIGRATIONS)
    backend = make_backend()
    backend.reset(discover(project / "api" / "db" / "migrations"))
    container = docker_client.containers.get(f"{project_name}-postgres-1")

    def run(*args: str) -> str:
        env = {
            **os.environ,
            "POSTGRES_IMAGE": backend.service.image,
            "POSTGRES_PORT": str(backend.port.host_port),
        }
        done = subprocess.run(
            [*compose, "-p", project_name, *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("ps", "-q").split() == [container.id]
    user, db = backend.user, backend.dbname
    count = run(
        "exec", "-T", "postgres", "psql", "-U", user, "-d", db, "-tAc", "SELECT count(*) FROM widgets"
    )
    assert count.strip() == "0"
    run("down", "-v")
    assert docker_client.containers.list(all=True, filters={"name": f"{project_name}-postgres-1"}) == []
    assert docker_client.volumes.list(filters={"name": f"{project_name}_pgdata"}) == []
