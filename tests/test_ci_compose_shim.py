"""CI's `docker compose` shim over Compose v1 (.ci/docker-compose-v2-shim): the docker CLI
plugin handshake, and the v2 behaviour it emulates for v1 (project from `name:`, which v1
refuses; -p, COMPOSE_PROJECT_NAME and .env still win; `--wait` not passed to v1). Compose v1
is replaced by a fake that records its arguments, so no engine is needed; the live run is
.ci/acceptance.sh in CI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SHIM = Path(__file__).resolve().parents[1] / ".ci" / "docker-compose-v2-shim"
pytestmark = pytest.mark.posix_only("the shim is a bash script for the Linux CI machine")

FAKE_V1 = """#!/usr/bin/env bash
# appends its arguments (one call per line, \\x1f after each) and, for -f, the file's content
out="$FAKE_RECORD"
printf '%s\\x1f' "$@" >>"$out.argv"
printf '\\n' >>"$out.argv"
while (($#)); do
    if [[ "$1" == -f ]]; then cat "$2" >"$out.file"; fi
    shift
done
"""


@pytest.fixture
def project(tmp_path):
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "docker-compose.yml").write_text(
        "name: leadgen\n\nservices:\n  postgres:\n    image: postgres:15\n", encoding="utf-8", newline="\n"
    )
    return directory


def run(project: Path, *args: str, env: dict[str, str] | None = None):
    """The shim's result, and the arguments of its last call of Compose v1."""
    done, calls = run_all(project, *args, env=env)
    return done, calls[-1] if calls else []


def run_all(project: Path, *args: str, env: dict[str, str] | None = None):
    """The shim's result, and the arguments of each call of Compose v1, in order."""
    bash = shutil.which("bash")
    fake = project.parent / "fake-docker-compose"
    fake.write_text(FAKE_V1, encoding="utf-8", newline="\n")
    fake.chmod(0o755)
    record = project.parent / "record"
    environ = {k: v for k, v in os.environ.items() if k != "COMPOSE_PROJECT_NAME"}
    environ.update({"LEADDB_COMPOSE_V1": str(fake), "FAKE_RECORD": str(record), **(env or {})})
    done = subprocess.run(
        [bash, str(SHIM), *args], cwd=project, env=environ, capture_output=True, text=True, timeout=60
    )
    argv_file = record.with_suffix(".argv")
    lines = argv_file.read_text(encoding="utf-8").splitlines() if argv_file.exists() else []
    return done, [line.split("\x1f")[:-1] for line in lines]


def test_answers_the_docker_cli_plugin_metadata_handshake(project):
    done, argv = run(project, "docker-cli-plugin-metadata")
    assert done.returncode == 0
    metadata = json.loads(done.stdout)  # one JSON object and nothing else
    assert metadata["SchemaVersion"] == "0.1.0"
    assert metadata["Vendor"] and metadata["ShortDescription"]
    assert argv == []  # v1 not run


def test_not_run_by_the_docker_cli_is_refused(project):
    done, _ = run(project, "ps")
    assert done.returncode == 1
    assert "run me as `docker compose …`" in done.stderr


def test_the_project_is_named_by_name_and_v1_reads_the_file_without_it(project):
    done, argv = run(project, "compose", "exec", "-T", "postgres", "psql", "-c", "\\dt")
    assert done.returncode == 0, done.stderr
    copy = argv[argv.index("-f") + 1]
    assert argv[: argv.index("exec")] == ["-f", copy, "-p", "leadgen", "--project-directory", str(project)]
    assert argv[argv.index("exec") :] == ["exec", "-T", "postgres", "psql", "-c", "\\dt"]
    recorded = (project.parent / "record.file").read_text(encoding="utf-8")
    assert recorded == "\nservices:\n  postgres:\n    image: postgres:15\n"
    assert not Path(copy).exists()  # the copy is removed afterwards


@pytest.mark.parametrize(
    ("args", "env", "dotenv", "project_name"),
    [
        (["-p", "mine"], {}, None, "mine"),
        ([], {"COMPOSE_PROJECT_NAME": "from-env"}, None, None),  # v1 reads the variable itself
        ([], {}, "COMPOSE_PROJECT_NAME=from-dotenv\n", None),  # and .env
    ],
    ids=["-p", "COMPOSE_PROJECT_NAME", ".env"],
)
def test_an_explicit_project_name_wins_over_name(project, args, env, dotenv, project_name):
    if dotenv:
        (project / ".env").write_text(dotenv, encoding="utf-8", newline="\n")
    done, argv = run(project, "compose", *args, "ps", env=env)
    assert done.returncode == 0, done.stderr
    global_options = argv[: argv.index("ps")]
    assert ("-p" in global_options) == (project_name is not None)
    if project_name:
        assert global_options[global_options.index("-p") + 1] == project_name


def test_wait_is_handled_by_the_shim_not_passed_to_v1(project):
    done, calls = run_all(project, "compose", "up", "-d", "--wait", "--wait-timeout", "5", "postgres")
    assert done.returncode == 0, done.stderr
    up, listing = calls  # then v1 lists the started containers (the fake lists none: no wait)
    assert up[up.index("up") :] == ["up", "-d", "postgres"]
    assert listing[listing.index("ps") :] == ["ps", "-q", "postgres"]
