"""What the reset takes from the Compose CLI for its labels (no engine): the hash `docker compose
config --hash=postgres` prints and the version `docker compose version --short` prints, asked
with the reset's project, directory, file and settings; and this tool's own hash, with the one
line a reset prints, wherever the CLI does not answer as Compose v2. The CLI is a fake `docker`
on PATH that records its arguments and environment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from leaddb import compose
from leaddb.backends.docker import compose_cli

pytestmark = pytest.mark.posix_only("the fake docker CLI is a shell script")

REPO = Path(__file__).resolve().parent.parent
HASH = "ab" * 32

FAKE = """#!/bin/sh
printf '%s\\n' "$*" >> "{record}/argv"
printf '%s|%s|%s\\n' "$PWD" "$COMPOSE_PROJECT_NAME" "$POSTGRES_PORT" >> "{record}/env"
case "$*" in
    *"version --short"*) printf '%s\\n' "{version}" ;;
    *"config --hash=postgres"*) {hash_command} ;;
    *) exit 64 ;;
esac
"""


@pytest.fixture
def project(tmp_path) -> Path:
    directory = tmp_path / "project"
    (directory / "api" / "db" / "migrations").mkdir(parents=True)
    shutil.copy(REPO / "docker-compose.yml", directory / "docker-compose.yml")
    return directory


def fake_docker(tmp_path: Path, *, version: str = "2.40.3", hash_command: str = "") -> dict[str, str]:
    """A PATH holding a fake `docker`; its records go to tmp_path/record."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    script = bin_dir / "docker"
    script.write_text(
        FAKE.format(
            record=record,
            version=version,
            hash_command=hash_command or f"printf 'postgres {HASH}\\n'",
        ),
        encoding="utf-8",
        newline="\n",
    )
    script.chmod(0o755)
    # first on PATH; the rest of PATH for what the script itself runs (sleep)
    return {"PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]), "POSTGRES_PORT": "55999"}


def service(project: Path, environ: dict[str, str]) -> compose.PostgresService:
    return compose.load_service(project, project_name="answered", environ=environ)


def test_the_hash_and_version_come_from_the_compose_cli_asked_as_the_reset_sees_the_project(
    tmp_path, project
):
    environ = fake_docker(tmp_path)
    svc = service(project, environ)
    answer = compose_cli.ask(svc, environ).answer()
    assert answer == compose_cli.Answer(HASH, "2.40.3", True)
    assert answer.note() is None
    calls = (tmp_path / "record" / "argv").read_text(encoding="utf-8").splitlines()
    assert sorted(calls) == sorted(
        [
            "compose version --short",
            f"compose --project-name answered --project-directory {project} --file "
            f"{project / 'docker-compose.yml'} config --hash=postgres",
        ]
    )
    # run in the project, with the reset's settings (not this process's)
    envs = set((tmp_path / "record" / "env").read_text(encoding="utf-8").splitlines())
    assert envs == {f"{project}|answered|55999"}


@pytest.mark.parametrize(
    ("version", "hash_command", "reason"),
    [
        ("1.29.2", "", "it is Compose 1.29.2, not v2"),
        (
            "2.40.3",
            "echo 'no such service' >&2; exit 1",
            "`docker compose config --hash=postgres`: no such service",
        ),
        ("2.40.3", "printf 'other 1234\\n'", "`docker compose config --hash` printed no hash"),
    ],
)
def test_where_the_cli_does_not_answer_as_compose_v2_the_reset_uses_its_own_hash_and_says_so(
    tmp_path, project, version, hash_command, reason
):
    environ = fake_docker(tmp_path, version=version, hash_command=hash_command)
    svc = service(project, environ)
    answer = compose_cli.ask(svc, environ).answer()
    assert not answer.from_compose and answer.reason == reason
    assert answer.config_hash == compose_cli.own_hash(svc)
    assert answer.version == compose_cli.CHECKED_VERSION
    assert answer.note() == (
        f"note: `docker compose` did not answer ({reason}): the container carries this tool's own "
        "config hash, so a later `docker compose up` recreates it once (a restart; same volume, "
        "data kept)"
    )


def test_no_docker_cli_at_all(tmp_path, project):
    environ = {"PATH": str(tmp_path / "nothing-here")}
    svc = service(project, environ)
    answer = compose_cli.ask(svc, environ).answer()
    assert not answer.from_compose and answer.reason.startswith("FileNotFoundError")
    assert answer.config_hash == compose_cli.own_hash(svc)


def test_a_question_closed_before_its_answer_leaves_no_cli_running(tmp_path, project):
    environ = fake_docker(tmp_path, hash_command="sleep 30")
    question = compose_cli.ask(service(project, environ), environ)
    assert question._calls["hash"].poll() is None  # still running: sleeping
    question.close()
    assert all(call.poll() is not None for call in question._calls.values())


def test_a_cli_that_hangs_is_given_up_on_in_a_bounded_while(tmp_path, project):
    environ = fake_docker(tmp_path, hash_command="sleep 30")
    question = compose_cli.ask(service(project, environ), environ)
    answer = question.answer(timeout=1)
    assert answer.reason == "`docker compose config --hash=postgres` gave no answer within 1 s"
    assert all(call.poll() is not None for call in question._calls.values())  # killed, not left
