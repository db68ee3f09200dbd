"""On Docker, a migration that breaks the spec's file rules is refused before the engine is asked
for anything: no container, no volume (the image would apply every file it finds)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from leaddb import workflow
from leaddb.backends.local import free_port
from leaddb.errors import MigrationError
from leaddb.spec import SPEC_FILENAME

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]


def test_a_file_breaking_the_rules_is_refused_before_a_container_or_volume_exists(
    project, project_name, image, docker_client, monkeypatch
):
    shutil.copy(REPO / SPEC_FILENAME, project / SPEC_FILENAME)
    directory = project / "api" / "db" / "migrations"
    shutil.rmtree(directory)
    shutil.copytree(REPO / "api" / "db" / "migrations", directory)
    # issue 10's case: no header, no transaction, the second statement fails
    (directory / "0008_half.sql").write_text(
        "CREATE TABLE probe_half (id int);\nCREATE TABLE probe_half (id int);\n",
        encoding="utf-8",
        newline="\n",
    )
    for name, value in {
        "COMPOSE_PROJECT_NAME": project_name,
        "POSTGRES_IMAGE": image,
        "POSTGRES_PORT": str(free_port()),
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(MigrationError) as raised:
        workflow.reset(workflow.Options(backend="docker", project_dir=project))
    assert [(v.file, v.line, v.rule) for v in raised.value.violations] == [
        ("api/db/migrations/0008_half.sql", 0, "printed in the spec"),  # and the spec does not print it
        ("api/db/migrations/0008_half.sql", 1, "header"),
        ("api/db/migrations/0008_half.sql", 1, "one transaction"),
        ("api/db/migrations/0008_half.sql", 2, "one transaction"),
    ]
    label = f"com.docker.compose.project={project_name}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert docker_client.volumes.list(filters={"label": label}) == []
    assert [v.name for v in docker_client.volumes.list() if v.name.startswith(project_name)] == []
