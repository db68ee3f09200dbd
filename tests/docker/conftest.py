"""Fixtures for the tests that need a real Docker engine and the local PostgreSQL 15 image.

The engine is whatever ``docker.from_env()`` finds (``DOCKER_HOST``, Docker Desktop's named
pipe, ``/var/run/docker.sock``). Without one the tests skip, except under CI (``CI`` set),
where they fail: CI provisions an engine (.ci/docker-engine.sh) and builds the image
(docker/postgres15/build-image.sh). The image is the compose file's, as `docker compose up`
would run it: ``POSTGRES_IMAGE`` (environment, then ``.env``), else the file's default
``postgres:15``, pulled when the engine lacks it; CI sets ``POSTGRES_IMAGE=leaddb/postgres:15-local``.
Containers of the backend join the project's own bridge network and publish their port on
127.0.0.1 only, as on Docker Desktop.

Everything a test creates carries a label or a project name of its own and is removed
afterwards; nothing else on the engine is touched.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest
from docker_support import GOOD_MIGRATIONS, write_migrations

from leaddb.backends.local import free_port

REPO = Path(__file__).resolve().parents[2]
TEST_LABEL = "org.leaddb.test"
COMPOSE_PROJECT = "com.docker.compose.project"


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: Docker tests must run, never skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    try:
        import docker
    except ImportError:
        _unavailable("the docker Python package is not installed")
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no engine
        _unavailable(
            f"no Docker engine answers ({type(exc).__name__}: {exc}); start Docker Desktop or "
            "`bash .ci/docker-engine.sh start` and export DOCKER_HOST"
        )
    yield client
    client.close()


def compose_image() -> str:
    """The image `docker compose up -d postgres` would run from this repository."""
    from leaddb import compose

    return compose.load_service(REPO).image


@pytest.fixture(scope="session")
def image(docker_client) -> str:
    import docker.errors

    name = compose_image()
    try:
        docker_client.images.get(name)
    except docker.errors.ImageNotFound:
        try:
            docker_client.images.pull(name)  # as `docker compose up` would
        except docker.errors.APIError as exc:
            _unavailable(
                f"image {name} (docker-compose.yml, POSTGRES_IMAGE) is not on the engine and cannot "
                f"be pulled ({exc.explanation or exc}); where nothing can be pulled, build the local "
                "image with `bash docker/postgres15/build-image.sh` and set "
                "POSTGRES_IMAGE=leaddb/postgres:15-local"
            )
    return name


@pytest.fixture
def project(tmp_path) -> Path:
    """A throwaway project: the repository's docker-compose.yml and two tiny migrations."""
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    write_migrations(tmp_path / "api" / "db" / "migrations", GOOD_MIGRATIONS)
    return tmp_path


def _remove_project(client, project_name: str, extra_volumes=()) -> None:
    import docker.errors

    for container in client.containers.list(all=True, filters={"label": f"{COMPOSE_PROJECT}={project_name}"}):
        container.remove(force=True, v=True)  # v: the anonymous volumes of the image
    names = {v.name for v in client.volumes.list(filters={"label": f"{COMPOSE_PROJECT}={project_name}"})}
    for name in names | set(extra_volumes):
        try:
            client.volumes.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
    for network in client.networks.list(filters={"label": f"{COMPOSE_PROJECT}={project_name}"}):
        network.remove()


@pytest.fixture
def project_name(docker_client):
    """A compose project name of the test's own; everything labelled with it is removed after."""
    name = f"leaddb-test-{secrets.token_hex(4)}"
    yield name
    _remove_project(docker_client, name, extra_volumes=[f"{name}_pgdata"])


@pytest.fixture
def make_backend(project, project_name, image):
    """DockerBackend factory on the throwaway project, on a free port, with the test image;
    the settings go through the backend's environ, never into os.environ."""
    from leaddb.backends.docker import DockerBackend

    port = free_port()

    def make(**overrides: str) -> DockerBackend:
        environ = {**os.environ, "POSTGRES_IMAGE": image, "POSTGRES_PORT": str(port), **overrides}
        return DockerBackend(project, project_name=project_name, environ=environ, boot_timeout=120)

    return make


@pytest.fixture
def labelled(docker_client):
    """Run/create containers and volumes under a test label; all removed after the test."""
    run_id = secrets.token_hex(4)

    class Labelled:
        label = {TEST_LABEL: run_id}

        def volume(self):
            return docker_client.volumes.create(
                name=f"leaddb-test-{run_id}-{secrets.token_hex(2)}", labels=self.label
            )

        def run(self, image, **kwargs):
            labels = {**self.label, **kwargs.pop("labels", {})}
            return docker_client.containers.run(image, detach=True, labels=labels, **kwargs)

    yield Labelled()
    for container in docker_client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={run_id}"}):
        container.remove(force=True, v=True)  # v: the anonymous volumes of the image
    for volume in docker_client.volumes.list(filters={"label": f"{TEST_LABEL}={run_id}"}):
        volume.remove(force=True)
