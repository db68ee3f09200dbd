"""The image's entrypoint against the official postgres image's documented contract.

Containers run without a network (``network_mode="none"``); every check goes through
``docker exec``, so these tests are the same on Docker Desktop, Linux and the CI engine.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import sys
from pathlib import Path

import pytest
from docker.types import Mount
from docker_support import logs, wait_for_exit, wait_for_log

from leaddb import platforms

pytestmark = pytest.mark.docker

INITDB = "/docker-entrypoint-initdb.d"
PGDATA = "/var/lib/postgresql/data"
READY = "database system is ready to accept connections"
COMPLETE = "PostgreSQL init process complete; ready for start up."
BUILD_KEY = "org.leaddb.build-key"  # the label of our image (docker/postgres15/build-image.sh)


def init_dir(tmp_path: Path, files: dict[str, str | bytes], executable=()) -> Path:
    directory = tmp_path / "initdb.d"
    directory.mkdir(parents=True)
    for name, content in files.items():
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="\n")
        path.chmod(0o755 if name in executable else 0o644)
    return directory


def read_only_bind(source: Path, target: str) -> dict:
    """A bind mount in the binds form, as leaddb's Docker backend makes one: Docker Desktop takes
    a Windows path only there (``Mount(type="bind")`` fails on it: docker-py issue 2661)."""
    return {platforms.docker_mount_source(source): {"bind": target, "mode": "ro"}}


def start(labelled, image, volume, *, initdb: Path | None = None, env=None, command=None, binds=None):
    binds = dict(binds or {})
    if initdb is not None:
        binds |= read_only_bind(initdb, INITDB)
    return labelled.run(
        image,
        command=command,
        environment=env or {},
        mounts=[Mount(PGDATA, volume.name, type="volume")],
        volumes=binds,
        network_mode="none",
    )


def psql(
    container, sql: str, *, user: str, db: str, port: int = 5432, host: str | None = None, password=None
):
    argv = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-U", user, "-d", db, "-p", str(port), "-c", sql]
    if host:
        argv[1:1] = ["-h", host]
    env = {"PGPASSWORD": password} if password is not None else {}
    code, output = container.exec_run(argv, environment=env)
    return code, output.decode().strip()


@pytest.fixture
def volume(labelled):
    return labelled.volume()


@pytest.fixture(scope="module", autouse=True)
def built_from_this_checkout(image, docker_client):
    """Our image must carry this checkout's entrypoint (its build key, as build-image.sh
    computes it), or these tests would test another one; the official image is left alone."""
    key = (docker_client.images.get(image).labels or {}).get(BUILD_KEY)
    if key is None:
        return
    build = Path(__file__).resolve().parents[2] / "docker" / "postgres15"
    wanted = hashlib.sha256(
        (build / "build-image.sh").read_bytes() + (build / "docker-entrypoint.sh").read_bytes()
    ).hexdigest()[:16]
    if key != wanted:
        pytest.fail(
            f"{image} was built from another docker/postgres15 (build key {key}, this checkout's is "
            f"{wanted}): rebuild it with `bash docker/postgres15/build-image.sh`",
            pytrace=False,
        )


def test_initialises_an_empty_volume_and_runs_init_files_in_order(tmp_path, labelled, image, volume):
    """And a second start on the initialised volume skips initialisation."""
    files = {
        "01_schema.sql": "CREATE TABLE steps (n int, what text);\nINSERT INTO steps VALUES (1, 'sql');\n",
        "02_data.sql.gz": gzip.compress(b"INSERT INTO steps VALUES (2, 'sql.gz');\n"),
        "03_sourced.sh": 'psql -v ON_ERROR_STOP=1 --no-psqlrc -U "$POSTGRES_USER" -d "$POSTGRES_DB" '
        "-c \"INSERT INTO steps VALUES (3, 'sourced sh')\"\n",
        "04_run.sh": '#!/bin/bash\npsql -v ON_ERROR_STOP=1 --no-psqlrc -U "$POSTGRES_USER" -d "$POSTGRES_DB" '
        "-c \"INSERT INTO steps VALUES (4, 'executed sh')\"\n",
        "05_ignored.txt": "not run\n",
    }
    initdb = init_dir(tmp_path, files, executable={"04_run.sh"})
    env = {
        "POSTGRES_USER": "alice",
        "POSTGRES_PASSWORD": "s3cret",
        "POSTGRES_DB": "shop",
        "POSTGRES_INITDB_ARGS": "--data-checksums",
    }
    container = start(labelled, image, volume, initdb=initdb, env=env)
    output = wait_for_log(container, READY, count=2)
    # Docker Desktop shows a file bind-mounted from Windows as mode 0777, so there the entrypoint
    # executes 03_sourced.sh instead of sourcing it (the same script either way); elsewhere the
    # mode is kept and the sourcing branch must be the one taken.
    shown_executable = container.exec_run(["test", "-x", f"{INITDB}/03_sourced.sh"]).exit_code == 0
    if sys.platform != "win32":
        assert not shown_executable
    sourced = "running" if shown_executable else "sourcing"
    order = [
        output.index(f"running {INITDB}/01_schema.sql"),
        output.index(f"running {INITDB}/02_data.sql.gz"),
    ]
    order += [output.index(f"{sourced} {INITDB}/03_sourced.sh"), output.index(f"running {INITDB}/04_run.sh")]
    assert order == sorted(order)
    assert f"ignoring {INITDB}/05_ignored.txt" in output
    # the temporary server's ready, then the final one's (COMPLETE is on stdout, READY on stderr:
    # the engine does not keep the two streams in order, so their relative order is not checked)
    output = wait_for_log(container, COMPLETE)  # stdout may trail stderr in the log
    assert output.count(READY) == 2
    assert psql(container, "SELECT string_agg(what, ',' ORDER BY n) FROM steps", user="alice", db="shop") == (
        0,
        "sql,sql.gz,sourced sh,executed sh",
    )
    assert psql(container, "SHOW data_checksums", user="alice", db="shop") == (0, "on")
    assert psql(container, "SHOW listen_addresses", user="alice", db="shop") == (0, "*")
    code, hba = container.exec_run(["tail", "-n", "1", f"{PGDATA}/pg_hba.conf"])
    assert hba.decode().strip() == "host all all all scram-sha-256"
    # the final server runs as postgres (pid 1, exec'd), not root
    code, owner = container.exec_run(["stat", "-c", "%U", "/proc/1"])
    assert owner.decode().strip() == "postgres"

    # a second start on the same volume, the same init files and settings: no initialisation,
    # nothing run again, the data kept
    container.stop(timeout=30)
    second = start(labelled, image, volume, initdb=initdb, env=env)
    output = wait_for_log(second, READY)
    assert "PostgreSQL Database directory appears to contain a database; Skipping initialization" in output
    assert "running /docker-entrypoint-initdb.d" not in output and "sourcing" not in output
    assert psql(second, "SELECT count(*) FROM steps", user="alice", db="shop") == (0, "4")


def test_failing_init_file_exits_non_zero_with_psql_error(tmp_path, labelled, image, volume):
    files = {
        "01_ok.sql": "CREATE TABLE ok (x int);\n",
        "02_broken.sql": "INSERT INTO ok VALUES (1);\nINSERT INTO missing_table\n  VALUES (2);\n",
        "03_never.sql": "CREATE TABLE never (x int);\n",
    }
    container = start(
        labelled, image, volume, initdb=init_dir(tmp_path, files), env={"POSTGRES_PASSWORD": "pw"}
    )
    assert wait_for_exit(container) != 0
    output = logs(container)
    assert f"running {INITDB}/02_broken.sql" in output
    assert f'psql:{INITDB}/02_broken.sql:3: ERROR:  relation "missing_table" does not exist' in output
    assert "03_never.sql" not in output
    assert COMPLETE not in output
    # the volume is left half-initialised: the next start skips initialisation, as upstream
    again = start(
        labelled, image, volume, initdb=init_dir(tmp_path / "again", {}), env={"POSTGRES_PASSWORD": "pw"}
    )
    assert "Skipping initialization" in wait_for_log(again, READY)


def test_file_forms_of_the_settings(tmp_path, labelled, image, volume):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for name, value in {"user": "bob", "password": "from-a-file", "db": "inventory"}.items():
        (secrets_dir / name).write_bytes(value.encode() + b"\n")
    container = start(
        labelled,
        image,
        volume,
        env={
            "POSTGRES_USER_FILE": "/run/secrets/user",
            "POSTGRES_PASSWORD_FILE": "/run/secrets/password",
            "POSTGRES_DB_FILE": "/run/secrets/db",
        },
        binds=read_only_bind(secrets_dir, "/run/secrets"),
    )
    wait_for_log(container, READY, count=2)
    assert psql(
        container, "SELECT current_user || '@' || current_database()", user="bob", db="inventory"
    ) == (
        0,
        "bob@inventory",
    )
    # loopback is "trust" in initdb's pg_hba (as upstream), so check the stored verifier instead
    code, verifier = psql(
        container, "SELECT rolpassword FROM pg_authid WHERE rolname = 'bob'", user="bob", db="inventory"
    )
    assert scram_matches(verifier, "from-a-file")
    assert not scram_matches(verifier, "from-a-file\n")


@pytest.mark.parametrize(
    ("setting", "content", "problem"),
    [
        ("PASSWORD", b"from-a-file\r\n", "ends in a carriage return (a CRLF line ending)"),  # Set-Content
        ("USER", b"\xef\xbb\xbfbob", "starts with a UTF-8 byte-order mark"),  # PowerShell 5.1 utf8
    ],
    ids=["CRLF password", "BOM user"],
)
def test_a_setting_file_saved_on_windows(
    tmp_path, labelled, image, volume, docker_client, setting, content, problem
):
    """Our image refuses what the official one silently keeps: a password ending in \\r that
    nobody can type, a role whose name starts with a byte-order mark."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "value").write_bytes(content)
    env = {f"POSTGRES_{setting}_FILE": "/run/secrets/value"}
    if setting != "PASSWORD":
        env["POSTGRES_PASSWORD"] = "pw"
    container = start(
        labelled,
        image,
        volume,
        env=env,
        binds=read_only_bind(secrets_dir, "/run/secrets"),
    )
    if BUILD_KEY not in (docker_client.images.get(image).labels or {}):
        # the official image: the value keeps what Windows added (why the tool refuses it too)
        wait_for_log(container, READY, count=2)
        if setting == "PASSWORD":
            _, verifier = psql(
                container,
                "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'",
                user="postgres",
                db="postgres",
            )
            assert scram_matches(verifier, "from-a-file\r")
        else:
            assert psql(container, "SELECT current_user", user="\ufeffbob", db="\ufeffbob") == (
                0,
                "\ufeffbob",
            )
        return
    assert wait_for_exit(container) != 0
    output = logs(container)
    assert (
        f"error: POSTGRES_{setting}_FILE (/run/secrets/value) {problem}, which would become part of the value"
        in output
    )
    assert "Set-Content -NoNewline" in output
    assert "Success. You can now start the database server" not in output  # refused before initdb


def scram_matches(verifier: str, password: str) -> bool:
    """Whether a SCRAM-SHA-256 verifier (pg_authid.rolpassword) was made from ``password``."""
    method, iterations_salt, keys = verifier.split("$")
    assert method == "SCRAM-SHA-256"
    iterations, salt = iterations_salt.split(":")
    stored_key = base64.b64decode(keys.split(":")[0])
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest() == stored_key


def test_host_auth_method_command_arguments_and_missing_password(
    tmp_path, labelled, image, volume, docker_client
):
    """POSTGRES_HOST_AUTH_METHOD and the command's arguments (both on one boot: the arguments
    reach the final server, which trusts TCP clients), then no password at all: refused."""
    trusting = start(
        labelled,
        image,
        volume,
        env={"POSTGRES_HOST_AUTH_METHOD": "trust"},
        command=["-c", "listen_addresses=127.0.0.1", "-c", "port=6543"],
    )
    output = wait_for_log(trusting, READY, count=2)
    assert 'listening on IPv4 address "127.0.0.1", port 6543' in output
    code, hba = trusting.exec_run(["tail", "-n", "1", f"{PGDATA}/pg_hba.conf"])
    assert hba.decode().strip() == "host all all all trust"
    assert psql(
        trusting, "SHOW port", user="postgres", db="postgres", port=6543, host="127.0.0.1", password=""
    ) == (0, "6543")

    refused = start(labelled, image, labelled.volume())
    assert wait_for_exit(refused) != 0
    assert "superuser password is not specified" in logs(refused)
