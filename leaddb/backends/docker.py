"""The ``postgres`` service of ``docker-compose.yml`` on a Docker engine, through docker-py.

``reset`` creates what ``docker compose up -d postgres`` would create — container
``<project>-postgres-1`` and volume ``<project>_<key>`` with Compose's
``com.docker.compose.*`` labels, so ``docker compose ps``, ``exec`` and ``down -v``
manage them — on a fresh volume, so the image applies the migrations through
``/docker-entrypoint-initdb.d`` on first boot. Every setting comes from the compose
file (``leaddb.compose``); nothing is repeated here.

Only objects carrying this project's labels are removed; a same-named volume without
them is refused unless ``force``, and a foreign container is never touched.

Boot phases are timed from the engine's own log timestamps, so they measure the
container, not this process's polling. ``apply`` runs ``psql -v ON_ERROR_STOP=1`` inside
the container on the mounted files; introspection uses psycopg over the published
loopback port.

Engines: ``docker.from_env()`` — ``DOCKER_HOST``, else the platform default (the
``npipe:////./pipe/docker_engine`` named pipe of Docker Desktop on Windows, which needs
pywin32, or ``/var/run/docker.sock`` on Linux). CI runs dockerd with ``--bridge=none``
and sets ``LEADDB_DOCKER_NETWORK=host``: the container then shares the host's network
and postgres is told to listen on 127.0.0.1 at the compose port only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import queue
import re
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

import psycopg
from psycopg.conninfo import make_conninfo

from leaddb import compose, locks
from leaddb.backends.base import Backend, BootReport, Phase
from leaddb.errors import BackendError, MigrationError, NonIdempotentMigration
from leaddb.migrations import Migration, Statement
from leaddb.runner import (
    ADVISORY_LOCK_KEY,
    ApplyResult,
    FileResult,
    migration_failure,
    unterminated_transaction,
)

# The Compose version written into the labels, as `docker compose` writes its own.
COMPOSE_VERSION = "2.29.7"
LABEL = "com.docker.compose."
NETWORK_ENV = "LEADDB_DOCKER_NETWORK"
BOOT_TIMEOUT_ENV = "LEADDB_DOCKER_BOOT_TIMEOUT"
DEFAULT_BOOT_TIMEOUT = 180.0
CONTAINER_PORT = 5432
# What of the compose service this backend applies when it creates the container itself;
# anything else ("x-" extensions aside) is refused rather than silently left out. (`restart`
# too: a restarted container skips initialisation, hiding the init file that failed.)
SERVICE_KEYS = ("image", "environment", "volumes", "ports", "healthcheck", "command", "shm_size")

# What the entrypoint (official image and ours) and the server print, in boot order.
INITDB_DONE = ("Success. You can now start the database server", "waiting for server to start")
INIT_FILE = re.compile(r": (?:running|sourcing) (/docker-entrypoint-initdb\.d/\S+)")
INIT_COMPLETE = "PostgreSQL init process complete; ready for start up."
SKIPPING_INIT = "Skipping initialization"
STOPPING = "waiting for server to shut down"
READY = "database system is ready to accept connections"
PSQL_MESSAGE = re.compile(
    r"^psql:(?P<file>[^:]+):(?P<line>\d+): (?P<level>ERROR|FATAL|WARNING|NOTICE|INFO):\s+"
    r"(?:(?P<sqlstate>[0-9A-Z]{5}): )?(?P<message>.*)$"
)
PSQL_FOLLOWUP = re.compile(r"^(DETAIL|HINT|CONTEXT|LINE \d+|QUERY|LOCATION):")
MARK = "leaddb-mark"
# printed before the lock, after it and after each file: server timestamps time the files
MARK_QUERY = "SELECT 'leaddb-mark', extract(epoch FROM clock_timestamp())"
# inside a transaction left open by the previous file, now() is that transaction's start
OPEN_TRANSACTION_LEFT = "leaddb: the file before this check left a transaction open"
OPEN_TRANSACTION_CHECK = (
    "DO $$BEGIN IF now() <> statement_timestamp() THEN "
    f"RAISE EXCEPTION '{OPEN_TRANSACTION_LEFT}'; END IF; END$$"
)


@dataclass(frozen=True)
class LogLine:
    at: datetime
    text: str


def parse_timestamp(text: str) -> datetime:
    """RFC 3339 with nanoseconds (the engine's format) to an aware datetime."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text.strip())
    if not match:
        raise ValueError(f"not an engine timestamp: {text!r}")
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    return datetime.fromisoformat(f"{base}.{micro}{'+00:00' if zone == 'Z' else zone}")


def parse_log(raw: bytes | str) -> list[LogLine]:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    lines = []
    for entry in text.splitlines():
        stamp, _, rest = entry.partition(" ")
        try:
            lines.append(LogLine(parse_timestamp(stamp), rest))
        except ValueError:
            if lines:  # a continuation without a stamp belongs to the line before
                lines.append(LogLine(lines[-1].at, entry))
    return lines


def boot_marks(lines: Sequence[LogLine]) -> dict[str, datetime]:
    """When each boot milestone appeared in the log (absent ones are left out).

    The engine copies stdout (the entrypoint's messages) and stderr (the server's) separately,
    so a line of one may be logged before an earlier line of the other. "Final ready" therefore
    never depends on the order of the two streams: on a first boot (initdb ran) it is the second
    "ready to accept connections" (the temporary server logs the first), on a later boot
    (initialisation skipped) the first."""
    marks: dict[str, datetime] = {}
    readies: list[datetime] = []
    skipped = False
    for line in lines:
        text = line.text
        if "initdb" not in marks and any(m in text for m in INITDB_DONE):
            marks["initdb"] = line.at
        if "first file" not in marks and INIT_FILE.search(text):
            marks["first file"] = line.at
        if "first file" in marks and "init stop" not in marks and STOPPING in text:
            marks["init stop"] = line.at
        if INIT_COMPLETE in text or SKIPPING_INIT in text:
            marks.setdefault("init complete", line.at)
            skipped = skipped or SKIPPING_INIT in text
        if READY in text:
            readies.append(line.at)
    first_boot = "initdb" in marks or "first file" in marks or ("init complete" in marks and not skipped)
    if first_boot and len(readies) >= 2:
        marks["final ready"] = readies[1]
    elif skipped and not first_boot and readies:
        marks["final ready"] = readies[0]
    return marks


def init_failure(lines: Sequence[LogLine]) -> tuple[str | None, list[str]]:
    """The init file that was running when the container stopped, and psql's error lines
    about that file (matched by the file psql names, not by their place in the log: the
    entrypoint's "running FILE" is on stdout, psql's errors on stderr); where psql names no
    file of ours (``<stdin>``: a ``.sql.gz`` or ``.sh`` file), its last error."""
    failing = None
    groups: list[tuple[str, list[str]]] = []  # (file psql names, its error and follow-up lines)
    capturing = False
    for line in lines:
        text = line.text.rstrip()
        found = INIT_FILE.search(text)
        if found:
            failing, capturing = found.group(1), False
            continue
        message = PSQL_MESSAGE.match(text)
        if message and message["level"] in ("ERROR", "FATAL"):
            groups.append((message["file"], [text]))
            capturing = True
        elif capturing and (PSQL_FOLLOWUP.match(text) or text.startswith(" ")):
            groups[-1][1].append(text)
        else:
            capturing = False
    about = [text for file, group in groups if file == failing for text in group]
    if not about and groups:  # psql names "<stdin>" for .sql.gz and .sh files: the last error
        about = groups[-1][1]
    return failing, about


def duration(value) -> int:
    """A compose duration ("1s", "1m30s", "500ms") in nanoseconds, as the engine wants."""
    if isinstance(value, int | float):
        return int(value * 1e9)
    units = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", str(value)):
        total += float(number) * units[unit]
    return int(total)


def statement_at(migration: Migration, line: int) -> Statement | None:
    """The statement psql was running when it reported ``line`` (the line it had read up to)."""
    found = None
    for statement in migration.statements:
        if statement.line <= line:
            found = statement
    return found


class DockerBackend(Backend):
    name = "docker"

    def __init__(
        self,
        project_dir: Path,
        *,
        project_name: str | None = None,
        environ: dict[str, str] | None = None,
        boot_timeout: float | None = None,
    ) -> None:
        super().__init__(project_dir)
        self._environ = dict(os.environ if environ is None else environ)
        self.service = compose.load_service(project_dir, project_name=project_name, environ=self._environ)
        if not self.service.ports:
            raise BackendError(
                f"{self.service.compose_file}: service {compose.SERVICE!r} publishes no port",
                hint='publish one on loopback, e.g. ports: ["127.0.0.1:5432:5432"]',
            )
        self.port = self.service.ports[0]
        self.host_network = self._environ.get(NETWORK_ENV, "").strip().lower() == "host"
        self.boot_timeout = boot_timeout or float(self._environ.get(BOOT_TIMEOUT_ENV) or DEFAULT_BOOT_TIMEOUT)
        self.container_name = f"{self.service.project_name}-{compose.SERVICE}-1"
        env = self.service.environment
        self.user = env.get("POSTGRES_USER") or "postgres"
        self.password = env.get("POSTGRES_PASSWORD", "")
        # the image's POSTGRES_PASSWORD_FILE (a secret mounted into the container) when no
        # POSTGRES_PASSWORD is set; read through the engine when a connection needs it
        self.password_file = "" if self.password else env.get("POSTGRES_PASSWORD_FILE", "")
        self.dbname = env.get("POSTGRES_DB") or self.user
        self._client = None
        self.init_files = True  # False: boot without the migrations mount (the bench's baseline)

    def without_init_files(self) -> DockerBackend:
        """The same service booting a bare server: what a boot costs without the migrations."""
        bare = copy.copy(self)
        bare.init_files = False
        return bare

    # -- engine ------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            self._client = connect_engine()
        return self._client

    @property
    def server_port(self) -> int:
        """The port postgres listens on inside its network namespace."""
        return self.port.host_port if self.host_network else self.port.container_port

    @property
    def host_address(self) -> str:
        return "127.0.0.1" if self.port.host_ip in ("", "0.0.0.0", "localhost") else self.port.host_ip

    def _project_labels(self) -> dict[str, str]:
        return {LABEL + "project": self.service.project_name}

    def _container_labels(self) -> dict[str, str]:
        config = json.dumps(self.service.raw, sort_keys=True, default=str)
        return {
            **self._project_labels(),
            LABEL + "service": compose.SERVICE,
            LABEL + "container-number": "1",
            LABEL + "oneoff": "False",
            LABEL + "project.working_dir": str(self.project_dir.resolve()),
            LABEL + "project.config_files": str(self.service.compose_file.resolve()),
            LABEL + "version": COMPOSE_VERSION,
            # Not Compose's exact hash: a later `docker compose up` may recreate the
            # container (keeping the volume), which is harmless.
            LABEL + "config-hash": hashlib.sha256(config.encode()).hexdigest(),
        }

    def _volume_labels(self, key: str) -> dict[str, str]:
        return {**self._project_labels(), LABEL + "volume": key, LABEL + "version": COMPOSE_VERSION}

    def _is_ours(self, labels: dict | None, **expected: str) -> bool:
        labels = labels or {}
        wanted = {**self._project_labels(), **{LABEL + k: v for k, v in expected.items()}}
        return all(labels.get(k) == v for k, v in wanted.items())

    def _our_containers(self) -> list:
        filters = {
            "label": [f"{k}={v}" for k, v in self._project_labels().items()]
            + [f"{LABEL}service={compose.SERVICE}"]
        }
        return self.client.containers.list(all=True, filters=filters)

    def _find_container(self):
        import docker.errors

        try:
            return self.client.containers.get(self.container_name)
        except docker.errors.NotFound:
            return None

    def _find_volume(self, name: str):
        import docker.errors

        try:
            return self.client.volumes.get(name)
        except docker.errors.NotFound:
            return None

    # -- reset -------------------------------------------------------------------------

    def reset_lock(self):
        lock = Path(tempfile.gettempdir()) / f"leaddb-docker-{self.service.project_name}.lock"
        return locks.exclusive(lock, f"db.reset of compose project {self.service.project_name!r}")

    def reset(self, migrations: Sequence[Migration], *, force: bool = False) -> BootReport:
        with self.reset_lock():
            return self._reset(migrations, force=force)

    def _reset(self, migrations: Sequence[Migration], *, force: bool) -> BootReport:
        report = BootReport(self.name)
        with report.phase("create"):
            self._check_service_keys()  # before anything of the previous boot is removed
            self._check_image()
            self._remove_ours(force=force)
            self._check_port_free()
            for key, name in self.service.volume_names.items():
                self.client.volumes.create(name=name, labels=self._volume_labels(key))
            container = self._create_container()
        start_called = time.perf_counter()  # from here on the engine's clock times the phases
        try:
            container.start()
        except Exception as exc:  # noqa: BLE001 - the engine's reason, reworded
            raise self._start_failure(exc) from None
        waiter = LogWaiter(container)
        try:
            lines = waiter.wait_final_ready(self.boot_timeout, lambda ls: self._boot_failure(ls, migrations))
        finally:
            waiter.close()
        self._wait_connectable(container)
        container.reload()
        engine_started = parse_timestamp(container.attrs["State"]["StartedAt"])
        report.phases.extend(engine_phases(engine_started, boot_marks(lines)))
        detected = time.perf_counter()
        # what the engine's clock does not cover: start-up of the start call, our log
        # reading, the connection check and the inspect; keeps the phases adding up to the
        # wall time
        engine_total = sum(p.seconds for p in report.phases[1:])
        report.phases.append(Phase("ready", max(0.0, (detected - start_called) - engine_total)))
        report.apply = None  # the init files ran inside the container: see the "apply" phase
        return report

    def _check_image(self) -> None:
        import docker.errors

        image = self.service.image
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            raise BackendError(
                f"image {image!r} (from {self.service.compose_file.name}) is not on the engine "
                f"at {self.client.api.base_url}",
                hint=f"`docker pull {image}`; where nothing can be pulled, build the local image with "
                "`bash docker/postgres15/build-image.sh` and set POSTGRES_IMAGE=leaddb/postgres:15-local",
            ) from None

    def _remove_ours(self, *, force: bool) -> list[str]:
        """Remove this project's container(s) and volume(s); refuse anything foreign."""
        import docker.errors

        done = []
        same_name = self._find_container()
        if same_name is not None and not self._is_ours(same_name.labels, service=compose.SERVICE):
            raise BackendError(
                f"container {self.container_name} exists but does not carry this project's "
                f"compose labels ({LABEL}project={self.service.project_name}); it is not ours",
                hint="leaving it alone: remove or rename it yourself, or choose another project name "
                "(COMPOSE_PROJECT_NAME)",
            )
        for container in self._our_containers():
            container.remove(force=True, v=True)  # anonymous volumes only; named ones below
            done.append(f"container {container.name}")
        for key, name in self.service.volume_names.items():
            volume = self._find_volume(name)
            if volume is None:
                continue
            if not self._is_ours(volume.attrs.get("Labels"), volume=key) and not force:
                raise BackendError(
                    f"volume {name} exists but was not created for compose project "
                    f"{self.service.project_name!r} (no {LABEL}project/{LABEL}volume labels)",
                    hint="refusing to delete data this tool did not create; pass --force to remove it "
                    "anyway, or choose another project name (COMPOSE_PROJECT_NAME)",
                )
            try:
                volume.remove(force=force)
            except docker.errors.APIError as exc:
                users = [c.name for c in self.client.containers.list(all=True, filters={"volume": name})]
                raise BackendError(
                    f"volume {name} cannot be removed: {exc.explanation or exc}"
                    + (f" (used by container(s) {', '.join(users)})" if users else ""),
                    hint="stop and remove the containers using it, then reset again",
                ) from None
            done.append(f"volume {name}")
        return done

    def _check_port_free(self) -> None:
        address = self.port.host_ip or "0.0.0.0"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # fail only on a listener, not on connections of the last boot in TIME_WAIT
            # (Windows' SO_REUSEADDR would allow stealing a port: use its exclusive mode)
            if os.name == "nt":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
            else:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, self.port.host_port))
            except OSError as exc:
                raise self._port_taken(str(exc)) from None

    def _port_taken(self, reason: str) -> BackendError:
        return BackendError(
            f"port {self.host_address}:{self.port.host_port} (ports: of {self.service.compose_file.name}) "
            f"is already in use: {reason}",
            hint="stop whatever listens there (another PostgreSQL?), or set POSTGRES_PORT to a free port "
            "in .env",
        )

    def _check_service_keys(self) -> None:
        """A reset refuses a service setting it would not apply to the container it creates;
        the tasks that use an existing container (apply, introspect, down) do not care."""

        unsupported = sorted(
            k for k in self.service.raw if k not in SERVICE_KEYS and not str(k).startswith("x-")
        )
        if unsupported:
            raise BackendError(
                f"{self.service.compose_file}: service {compose.SERVICE!r} sets "
                f"{', '.join(unsupported)}, which the docker backend does not apply to the container "
                "it creates"
                + (
                    " (restart: a container restarted after a failed init file skips initialisation, "
                    "which would hide the failure)"
                    if "restart" in unsupported
                    else ""
                ),
                hint=f"express it with {', '.join(SERVICE_KEYS)}; or start the service with "
                "`docker compose up -d postgres` and use `--backend dsn`",
            )

    def _create_container(self):
        from docker.types import Healthcheck, Mount

        mounts = []
        for mount in self.service.mounts:
            if mount.target == compose.INITDB_DIR and not self.init_files:
                continue
            if mount.is_volume:
                source = self.service.volume_names[mount.source]
                mounts.append(Mount(str(mount.target), source, type="volume", read_only=mount.read_only))
            else:
                source = (self.project_dir / Path(*PurePosixPath(mount.source).parts)).resolve()
                if not source.exists():
                    raise BackendError(
                        f"{self.service.compose_file.name} mounts {mount.source} at {mount.target}, "
                        f"but {source} does not exist"
                    )
                mounts.append(Mount(str(mount.target), str(source), type="bind", read_only=mount.read_only))
        environment = dict(self.service.environment)
        command = list(self.service.command) if self.service.command else None
        kwargs: dict = {}
        if self.host_network:
            # no bridge on the CI engine: share the host's network, listen on loopback only
            image_cmd = self.client.images.get(self.service.image).attrs["Config"].get("Cmd") or ["postgres"]
            command = [
                *(command or image_cmd),
                "-c",
                f"listen_addresses={self.host_address}",
                "-c",
                f"port={self.server_port}",
            ]
            environment["PGPORT"] = str(self.server_port)  # psql/pg_isready inside find the socket
            kwargs["network_mode"] = "host"
        else:
            kwargs["ports"] = {
                f"{self.port.container_port}/tcp": (self.port.host_ip or "0.0.0.0", self.port.host_port)
            }
        if self.service.raw.get("shm_size") is not None:
            kwargs["shm_size"] = self.service.raw["shm_size"]
        check = self.service.healthcheck
        if check.get("test") and not check.get("disable"):
            kwargs["healthcheck"] = Healthcheck(
                test=check["test"],
                interval=duration(check.get("interval", "30s")),
                timeout=duration(check.get("timeout", "30s")),
                retries=int(check.get("retries", 3)),
                start_period=duration(check.get("start_period", "0s")),
            )
        return self.client.containers.create(
            self.service.image,
            command=command,
            name=self.container_name,
            labels=self._container_labels(),
            environment=environment,
            mounts=mounts,
            detach=True,
            **kwargs,
        )

    def _start_failure(self, exc: Exception) -> BackendError:
        text = str(getattr(exc, "explanation", None) or exc)
        if "address already in use" in text or "port is already allocated" in text:
            return self._port_taken(text)
        return BackendError(
            f"the engine could not start container {self.container_name}: {text}",
            hint=f"`docker logs {self.container_name}`; `invoke db.reset --backend docker` retries "
            "from an empty volume",
        )

    def _boot_failure(self, lines: Sequence[LogLine], migrations: Sequence[Migration]) -> BackendError:
        """The container exited before the final server was up."""
        container = self._find_container()
        code = container.attrs["State"].get("ExitCode") if container is not None else "?"
        volumes = ", ".join(self.service.volume_names.values()) or "(no volume)"
        marks = boot_marks(lines)
        failing, errors = init_failure(lines)
        if failing and "init complete" not in marks:
            detail = "\n".join("    " + e for e in errors) or "    (no psql error in the log; see below)"
            statement = self._statement_for(failing, errors, migrations)
            tail = "" if errors else "\n  last log lines:\n" + _tail(lines)
            return BackendError(
                f"container {self.container_name} exited (code {code}) during first-boot "
                f"initialisation, running {failing}:\n{detail}{statement}{tail}\n"
                f"  volume {volumes} is left half-initialised: the image skips initialisation on it "
                "from now on, so it never gets the remaining files",
                hint=f"fix {PurePosixPath(failing).name}, then `invoke db.reset --backend docker` removes "
                f"the container and the half-initialised volume and boots again "
                f"(`docker logs {self.container_name}` shows the whole log)",
            )
        text = "\n".join(line.text for line in lines)
        if "Address already in use" in text:
            return self._port_taken("the server could not bind it")
        return BackendError(
            f"container {self.container_name} exited (code {code}) before the server was ready; "
            f"last log lines:\n{_tail(lines)}",
            hint=f"see the log above (`docker logs {self.container_name}`); "
            "`invoke db.reset --backend docker` starts again from an empty volume",
        )

    def _statement_for(self, failing: str, errors: list[str], migrations: Sequence[Migration]) -> str:
        name = PurePosixPath(failing).name
        migration = next((m for m in migrations if m.name == name), None)
        first = next((PSQL_MESSAGE.match(e) for e in errors if PSQL_MESSAGE.match(e)), None)
        if migration is None or first is None:
            return ""
        statement = statement_at(migration, int(first["line"]))
        if statement is None:
            return ""
        body = "\n".join("    " + text for text in statement.sql.splitlines())
        return f"\n  statement ({migration.display(self.project_dir)}:{statement.line}):\n{body}"

    def _wait_connectable(self, container) -> None:
        """The final server answers on the published loopback port (what introspection uses)."""
        deadline = time.monotonic() + 15
        while True:
            try:
                psycopg.connect(self.conninfo_unchecked("postgres", container), connect_timeout=3).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise BackendError(
                        f"container {self.container_name} logged that it is ready, but "
                        f"{self.host_address}:{self.port.host_port} does not accept connections: "
                        f"{str(exc).strip()}",
                        hint="check that nothing else holds the port and that the engine publishes it "
                        "on this host (Docker Desktop: Settings > Resources > Network)",
                    ) from None
                time.sleep(0.05)

    # -- apply -------------------------------------------------------------------------

    def apply(self, migrations: Sequence[Migration], *, reapply: bool = False, on_file=None) -> ApplyResult:
        """Every file through ``psql -v ON_ERROR_STOP=1 -f`` inside the container, in one
        session: the advisory lock is taken first and holds across all files, as in
        ``runner.apply``; server timestamps between files time each file."""
        container = self._running_container()
        mount = self.service.initdb_mount
        if mount is None:
            raise BackendError(
                f"{self.service.compose_file.name} mounts nothing at {compose.INITDB_DIR}",
                hint=f"mount the migrations directory read-only at {compose.INITDB_DIR}",
            )
        mounted = (self.project_dir / Path(*PurePosixPath(mount.source).parts)).resolve()
        argv = [
            "psql",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
            "--no-psqlrc",
            "--quiet",
            "--no-align",
            "--tuples-only",
            "-U",
            self.user,
            "-d",
            self.dbname,
            "-p",
            str(self.server_port),
            "-c",
            "SET client_min_messages = notice",
            "-c",
            MARK_QUERY,
            "-c",
            f"SELECT pg_advisory_lock({ADVISORY_LOCK_KEY})",
            "-c",
            MARK_QUERY,
        ]
        paths: dict[str, Migration] = {}
        for migration in migrations:
            if migration.path.resolve().parent != mounted:
                raise BackendError(
                    f"{migration.display(self.project_dir)} is not in {mounted}, the directory "
                    f"mounted at {compose.INITDB_DIR}",
                    hint="apply the files of the mounted migrations directory",
                )
            target = str(compose.INITDB_DIR / migration.name)
            paths[target] = migration
            # the end of a file is the end of a `psql -f` session: no transaction left open, no
            # setting carried into the next file
            argv += ["-f", target, "-c", OPEN_TRANSACTION_CHECK, "-c", "RESET ALL", "-c", MARK_QUERY]
        argv += ["-c", f"SELECT pg_advisory_unlock({ADVISORY_LOCK_KEY})"]
        started = time.perf_counter()
        exit_code, (out, err) = container.exec_run(argv, demux=True)
        elapsed = time.perf_counter() - started
        stdout = (out or b"").decode("utf-8", "replace")
        stderr = (err or b"").decode("utf-8", "replace")
        marks = []  # before the lock, after it, then after each file
        for line in stdout.splitlines():
            label, _, at = line.partition("|")
            if label == MARK:
                marks.append(float(at))
        notices: dict[str, list[str]] = {}
        for line in stderr.splitlines():
            found = PSQL_MESSAGE.match(line)
            if found and found["level"] in ("NOTICE", "WARNING", "INFO"):
                notices.setdefault(found["file"], []).append(found["message"])
        if exit_code != 0:
            if OPEN_TRANSACTION_LEFT in stderr and 2 <= len(marks) < len(paths) + 2:
                raise unterminated_transaction(list(paths.values())[len(marks) - 2], self.project_dir)
            raise self._apply_failure(stderr, paths, reapply, exit_code)
        result = ApplyResult(seconds=elapsed)
        if len(marks) != len(paths) + 2:
            raise BackendError(
                f"psql in container {self.container_name} printed unexpected output:\n{stdout}"
            )
        result.lock_wait_seconds = marks[1] - marks[0]
        previous = marks[1]
        for target, migration, done in zip(paths, paths.values(), marks[2:], strict=True):
            file_result = FileResult(
                migration,
                max(0.0, done - previous),
                len(migration.statements),
                tuple(notices.get(target, ())),
            )
            previous = done
            result.files.append(file_result)
            if on_file:
                on_file(file_result)
        return result

    def _apply_failure(
        self, stderr: str, paths: dict[str, Migration], reapply: bool, exit_code: int
    ) -> MigrationError | NonIdempotentMigration | BackendError:
        lines = stderr.splitlines()
        index, found = next(
            (
                (i, m)
                for i, line in enumerate(lines)
                if (m := PSQL_MESSAGE.match(line)) and m["level"] == "ERROR"
            ),
            (None, None),
        )
        migration = paths.get(found["file"]) if found else None
        if found is None or migration is None:
            return BackendError(
                f"psql in container {self.container_name} failed (exit {exit_code}):\n"
                + "\n".join("    " + line for line in lines[-20:]),
                hint="see psql's output above",
            )
        line = int(found["line"])
        statement = statement_at(migration, line)
        details = [f"psql reported line {line}"]
        for extra in lines[index + 1 :]:
            if not PSQL_FOLLOWUP.match(extra) or extra.startswith("LOCATION:"):
                break
            details.append(extra.lower().split(":", 1)[0] + ":" + extra.split(":", 1)[1])
        # psql stops at the error and its session ends: an open transaction is rolled back
        wrapped = bool(migration.statements) and migration.statements[0].sql.upper() in (
            "BEGIN",
            "START TRANSACTION",
        )
        return migration_failure(
            migration,
            statement,
            line=statement.line if statement else line,
            message=found["message"],
            sqlstate=found["sqlstate"],
            details=details,
            reapply=reapply,
            project_dir=self.project_dir,
            rolled_back=wrapped,
        )

    # -- the running server ------------------------------------------------------------

    def _running_container(self):
        container = self._find_container()
        if container is None or not self._is_ours(container.labels, service=compose.SERVICE):
            raise BackendError(
                f"no container {self.container_name} of compose project {self.service.project_name!r} "
                f"on the engine at {self.client.api.base_url}",
                hint="`invoke db.reset --backend docker` creates it (or `docker compose up -d postgres`)",
            )
        if container.status != "running":
            raise BackendError(
                f"container {self.container_name} is {container.status}",
                hint="`invoke db.reset --backend docker` recreates it (or `docker compose up -d postgres` "
                "starts it)",
            )
        return container

    def conninfo_unchecked(self, dbname: str | None = None, container=None) -> str:
        return make_conninfo(
            host=self.host_address,
            port=self.port.host_port,
            user=self.user,
            password=self._password_of(container),
            dbname=dbname or self.dbname,
        )

    def conninfo(self, dbname: str | None = None) -> str:
        return self.conninfo_unchecked(dbname, self._running_container())

    def _password_of(self, container) -> str:
        """POSTGRES_PASSWORD, or the content of POSTGRES_PASSWORD_FILE as the entrypoint reads
        it (``$(< file)``: trailing newlines dropped), read once from the running container."""
        if self.password or not self.password_file:
            return self.password
        container = container or self._running_container()
        exit_code, (out, err) = container.exec_run(["cat", "--", self.password_file], demux=True)
        if exit_code != 0:
            reason = (err or b"").decode("utf-8", "replace").strip() or f"exit code {exit_code}"
            raise BackendError(
                f"cannot read POSTGRES_PASSWORD_FILE {self.password_file} in container "
                f"{self.container_name}: {reason}",
                hint=f"mount the secret at {self.password_file} in {self.service.compose_file.name}, "
                "or set POSTGRES_PASSWORD",
            )
        self.password = (out or b"").decode("utf-8").rstrip("\n")
        return self.password

    def down(self) -> str:
        done = self._remove_ours(force=False)
        if not done:
            return f"docker: nothing of compose project {self.service.project_name!r} to remove"
        return "docker: removed " + ", ".join(done)

    def describe(self) -> str:
        masked = make_conninfo(
            host=self.host_address, port=self.port.host_port, user=self.user, dbname=self.dbname
        )
        secret = (
            " password=***"
            if self.password
            else f" password from {self.password_file}"
            if self.password_file
            else ""
        )
        network = ", host network" if self.host_network else ""
        volumes = ", ".join(self.service.volume_names.values())
        return (
            f"docker container {self.container_name} (image {self.service.image}, volume {volumes}"
            f"{network}; {masked}{secret})"
        )


def engine_phases(started: datetime, marks: dict[str, datetime]) -> list[Phase]:
    """Container start → initdb done → first init file → temporary server stopping → init
    complete → final server ready, as consecutive phases: ``initdb``, ``init server`` (start
    of the temporary server, CREATE DATABASE), ``apply`` (the init files), ``init stop``
    (its shutdown checkpoint), ``restart`` (the final server). A milestone missing from
    the log folds into the next phase."""
    phases = []
    previous = started
    for name, mark in (
        ("initdb", "initdb"),
        ("init server", "first file"),
        ("apply", "init stop"),
        ("init stop", "init complete"),
        ("restart", "final ready"),
    ):
        at = marks.get(mark)
        if at is None:
            phases.append(Phase(name, 0.0))
            continue
        phases.append(Phase(name, max(0.0, (at - previous).total_seconds())))
        previous = max(previous, at)
    return phases


def _tail(lines: Sequence[LogLine], count: int = 25) -> str:
    return "\n".join("    " + line.text for line in lines[-count:])


def connect_engine():
    """docker-py's client for DOCKER_HOST or the platform default; one clear error when no
    engine answers."""
    try:
        import docker
    except ImportError:
        raise BackendError(
            "the docker Python package is not installed", hint="pip install -e . (it is a dependency)"
        ) from None
    where = os.environ.get("DOCKER_HOST") or (
        "npipe:////./pipe/docker_engine" if os.name == "nt" else "unix:///var/run/docker.sock"
    )
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - every way of not answering means the same to the user
        hint = (
            "start Docker Desktop and wait until it says the engine is running"
            if os.name == "nt"
            else "start the engine (sudo systemctl start docker; in CI: bash .ci/docker-engine.sh start "
            "and export DOCKER_HOST), or use --backend local"
        )
        if os.name == "nt" and isinstance(exc, ImportError | ModuleNotFoundError):
            hint = "install pywin32 (pip install -e . installs it on Windows), then retry"
        raise BackendError(
            f"no Docker engine answered at {where}: {type(exc).__name__}: {exc}", hint=hint
        ) from None
    return client


class LogWaiter:
    """Follows a container's log (with the engine's timestamps) on a thread, so the
    final "ready" is seen as soon as the engine has it."""

    def __init__(self, container) -> None:
        self.container = container
        self.lines: list[LogLine] = []
        self._events: queue.Queue = queue.Queue()
        self._stream = None
        self._thread: threading.Thread | None = None

    def _follow(self, events: queue.Queue) -> None:
        buffer = b""
        try:
            self._stream = self.container.logs(stream=True, follow=True, timestamps=True)
            for chunk in self._stream:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                if complete:
                    events.put(parse_log(b"\n".join(complete)))
        except Exception as exc:  # noqa: BLE001 - ends the follow; the waiter checks the state
            events.put(exc)
        if buffer:
            events.put(parse_log(buffer))
        events.put(None)

    def _start_follow(self) -> None:
        """Follow from the start of the log, on a queue of its own: whatever a broken follow
        still reports lands on its old queue and is never read."""
        self.lines = []
        self._events = queue.Queue()
        self._thread = threading.Thread(
            target=self._follow, args=(self._events,), name="leaddb-docker-logs", daemon=True
        )
        self._thread.start()

    def wait_final_ready(self, timeout: float, on_exit) -> list[LogLine]:
        self._start_follow()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BackendError(
                    f"container {self.container.name} was not ready within {timeout:.0f} s; "
                    f"last log lines:\n{_tail(self.lines)}",
                    hint=f"raise {BOOT_TIMEOUT_ENV} if the engine is just slow; "
                    f"`docker logs {self.container.name}` shows the whole log",
                )
            try:
                event = self._events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                event = []
            if isinstance(event, list):
                self.lines.extend(event)
                if "final ready" in boot_marks(self.lines):
                    return self.lines
                continue
            # the log ended: the container stopped, or the follow broke while it runs
            while True:
                self.container.reload()
                if self.container.status not in ("running", "created", "restarting"):
                    self.lines = parse_log(self.container.logs(timestamps=True))
                    raise on_exit(self.lines)
                if isinstance(event, Exception) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if isinstance(event, Exception):
                self._start_follow()

    def close(self) -> None:
        stream = self._stream
        if stream is not None and hasattr(stream, "close"):
            try:
                stream.close()
            except Exception:  # noqa: BLE001, S110 - closing a finished stream
                pass
