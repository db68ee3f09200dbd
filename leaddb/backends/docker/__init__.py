"""The ``postgres`` service of ``docker-compose.yml`` on a Docker engine, through docker-py.

``reset`` creates what ``docker compose up -d postgres`` would create (``service``), on a
fresh volume, so the image applies the migrations through ``/docker-entrypoint-initdb.d``
on first boot, and times the boot from the engine's log (``bootlog``). ``apply`` runs
``psql -v ON_ERROR_STOP=1 -f`` inside the container on the mounted files (``psql``);
introspection uses psycopg over the published loopback port. Only objects carrying this
project's labels are removed (``resources``). The engine: ``engine``.

The rooms: ``engine`` (connecting), ``service`` (compose service → container, labels),
``compose_cli`` (the config hash and version the Compose CLI gives, for those labels),
``resources`` (containers, volumes, network of the project, found by their labels),
``bootlog`` (the boot log, its phases and failures), ``psql`` (the in-container applier),
``floor`` (the bench's bare ``docker run``).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from leaddb import compose, locks, names, platforms, statedir
from leaddb.backends.base import Backend, BootReport, Capabilities, FloorBoot, Phase
from leaddb.backends.docker import bootlog, compose_cli, engine, floor, psql
from leaddb.backends.docker.resources import Resources
from leaddb.backends.docker.service import ServiceSpec
from leaddb.console import say
from leaddb.errors import BackendError
from leaddb.migrations import Migration
from leaddb.secret_file import secret_value

if TYPE_CHECKING:
    from leaddb import runner

DEFAULT_BOOT_TIMEOUT = 180.0


def _warm_imports() -> None:
    """What a reset needs only once its container is up (psycopg for the port check, rich for
    the phase table), imported while the container boots: the process idles then, and a whole
    `invoke db.reset --backend docker` is that much closer to a bare `docker run`."""
    try:
        import psycopg.conninfo  # noqa: F401
        import rich.console  # noqa: F401
        import rich.table  # noqa: F401
        from psycopg import pq  # noqa: F401
    except ImportError:  # the main thread imports them again, and says so
        pass


def _conninfo_text(**params) -> str:
    """``key=value`` pairs as libpq reads them (psycopg's ``make_conninfo`` quoting), for what a
    task prints before psycopg is imported."""

    def quoted(value) -> str:
        text = re.sub(r"([\\'])", r"\\\1", str(value))
        return f"'{text}'" if not text or re.search(r"\s", text) else text

    return " ".join(f"{key}={quoted(value)}" for key, value in params.items() if value is not None)


class DockerBackend(Backend):
    name = "docker"
    capabilities = Capabilities(owns_server=True, floor_boot=True, fresh_boot_goal=3.0)
    built = "the container and its volume"

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
                f"{self.service.compose_file.name}: service {compose.SERVICE!r} publishes no port",
                hint='publish one on loopback, e.g. ports: ["127.0.0.1:5432:5432"]',
            )
        self.spec = ServiceSpec(self.service)
        self.port = self.service.ports[0]
        self.boot_timeout = boot_timeout or float(
            self._environ.get(bootlog.BOOT_TIMEOUT_ENV) or DEFAULT_BOOT_TIMEOUT
        )
        self.container_name = self.spec.container_name
        env = self.service.environment
        self.user = env.get("POSTGRES_USER") or "postgres"
        self.password = env.get("POSTGRES_PASSWORD", "")
        # the image's POSTGRES_PASSWORD_FILE (a secret mounted into the container) when no
        # POSTGRES_PASSWORD is set; read through the engine by ``start``
        self.password_file = "" if self.password else env.get("POSTGRES_PASSWORD_FILE", "")
        self.dbname = env.get("POSTGRES_DB") or self.user
        self._client = None

    # -- engine ------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            self._client = engine.connect()
        return self._client

    @property
    def resources(self) -> Resources:
        return Resources(self.client, self.spec)

    @property
    def host_address(self) -> str:
        return "127.0.0.1" if self.port.host_ip in ("", "0.0.0.0", "localhost") else self.port.host_ip

    def server_info(self) -> dict:
        return {**super().server_info(), **engine.info(self.client)}

    def lock(self, task: str, *, shared: bool = False):
        # in the invoking user's private directory: a predictable name in the shared temp dir
        # could be another user's link or file
        lock = statedir.lock_path(f"docker-{self.spec.project}")
        return locks.hold(lock, task, f"compose project {self.spec.project!r}", shared=shared)

    # -- reset -------------------------------------------------------------------------

    def reset(
        self, migrations: Sequence[Migration], *, force: bool = False, end_sessions: bool = False
    ) -> BootReport:
        names.check_target(self.dbname, action="create", source=self.database_setting)  # before anything
        report = BootReport(self.name)
        with report.phase("create"):
            self.spec.check_keys()  # before anything of the previous boot is removed
            resources = self.resources  # docker-py, imported and connected
            image_id = resources.check_image(self.service.image, self.service.compose_file.name)
            # Compose's own hash and version for the labels, asked now and answered while the
            # engine removes the previous boot (the longest wait before the new one can start)
            question = compose_cli.ask(self.service, self._environ)
            try:
                removed = resources.remove(force=force)
                # the engine may free the port of the container it just removed a moment later
                # (docker-proxy, Docker Desktop's port forwarder): wait for it, a bounded while
                self._check_port_free(grace=10.0 if any(r.startswith("container") for r in removed) else 0.0)
                answer = question.answer()
            finally:
                question.close()  # a failure (or Ctrl-C) before the answer leaves no CLI running
            if note := answer.note():
                say(note)
            resources.ensure_network(answer.version)
            resources.create_volumes(answer.version)
            kwargs = self.spec.create_kwargs(self.client, labels=self.spec.container_labels(answer, image_id))
            container = self.client.containers.create(self.service.image, **kwargs)
        start_called = time.perf_counter()  # from here on the engine's clock times the phases
        try:
            container.start()
        except Exception as exc:  # noqa: BLE001 - the engine's reason, reworded
            raise self._start_failure(exc) from None
        warming = threading.Thread(target=_warm_imports, name="leaddb-warm-imports", daemon=True)
        warming.start()
        # when the engine started it, read while the server initialises (not after it is ready)
        container.reload()
        engine_started = bootlog.parse_timestamp(container.attrs["State"]["StartedAt"])
        waiter = bootlog.LogWaiter(container)
        try:
            lines = waiter.wait_final_ready(
                self.boot_timeout, lambda ls: self._boot_failure(ls, migrations, container)
            )
        finally:
            waiter.close()
        warming.join()
        self._wait_connectable(container)
        report.phases.extend(bootlog.engine_phases(engine_started, bootlog.boot_marks(lines)))
        detected = time.perf_counter()
        # what the engine's clock does not cover: the start call up to the process's start,
        # our log reading and the port check; keeps the phases adding up to the wall time
        engine_total = sum(p.seconds for p in report.phases[1:])
        report.phases.append(Phase("ready", max(0.0, (detected - start_called) - engine_total)))
        report.apply = None  # the init files ran inside the container: see the "apply" phase
        return report

    def floor_boot(self, *, migrations: bool = True) -> FloorBoot:
        """The same container booted by a bare ``docker run`` on the same engine (``floor``);
        ``migrations=False``: without the migrations mount (the image's bare boot).

        Our own container and volume are removed first, as a reset removes them: the floor
        boots with nothing of ours running beside it, as a reset's container does (an idle
        server beside it still runs its healthcheck, an exec every second, on the same cores)."""
        self.resources.check_image(self.service.image, self.service.compose_file.name)
        self.resources.remove(force=False)
        self.resources.ensure_network()  # the same network setup: a reset finds it there too
        return floor.run(
            self.client,
            self.spec,
            host=self.host_address,
            user=self.user,
            timeout=self.boot_timeout,
            migrations=migrations,
        )

    def _check_port_free(self, grace: float = 0.0) -> None:
        deadline = time.monotonic() + grace
        while (
            taken := platforms.bind_probe(self.port.host_ip or "0.0.0.0", self.port.host_port)
        ) is not None:
            if time.monotonic() >= deadline:
                raise self._port_taken(str(taken))
            time.sleep(0.02)

    def _port_taken(self, reason: str) -> BackendError:
        return BackendError(
            f"port {self.host_address}:{self.port.host_port} (ports: of {self.service.compose_file.name}) "
            f"is already in use: {reason}",
            hint="stop whatever listens there (another PostgreSQL?), or set POSTGRES_PORT to a free port "
            "in .env",
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

    def _boot_failure(
        self, lines: Sequence[bootlog.LogLine], migrations: Sequence[Migration], container
    ) -> BackendError:
        """The container exited before the final server was up."""
        container.reload()
        state = container.attrs["State"]
        code = state.get("ExitCode", "?")
        volumes = ", ".join(self.service.volume_names.values()) or "(no volume)"
        marks = bootlog.boot_marks(lines)
        killed = bootlog.killed_by(state)
        if killed and "final ready" not in marks:
            # the engine or the kernel ended it (docker kill, OOM, Docker Desktop restarting):
            # nothing is wrong with the file that happened to be running
            return BackendError(
                f"container {self.container_name} was killed ({killed}) during "
                f"{'first-boot initialisation' if 'init complete' not in marks else 'start-up'}; "
                f"last log lines:\n{bootlog.tail(lines)}\n"
                f"  volume {volumes} is left half-initialised",
                hint="`invoke db.reset --backend docker` recreates it from an empty volume; if it was "
                "out of memory, give the engine more (Docker Desktop: Settings > Resources)",
            )
        failing, errors = bootlog.init_failure(lines)
        if failing and "init complete" not in marks:
            detail = "\n".join("    " + e for e in errors) or "    (no psql error in the log; see below)"
            statement = self._statement_for(failing, errors, migrations)
            tail = "" if errors else "\n  last log lines:\n" + bootlog.tail(lines)
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
            f"last log lines:\n{bootlog.tail(lines)}",
            hint=f"see the log above (`docker logs {self.container_name}`); "
            "`invoke db.reset --backend docker` starts again from an empty volume",
        )

    def _statement_for(self, failing: str, errors: list[str], migrations: Sequence[Migration]) -> str:
        name = PurePosixPath(failing).name
        migration = next((m for m in migrations if m.name == name), None)
        first = next((psql.PSQL_MESSAGE.match(e) for e in errors if psql.PSQL_MESSAGE.match(e)), None)
        if migration is None or first is None:
            return ""
        statement = psql.statement_at(migration, int(first["line"]))
        if statement is None:
            return ""
        body = "\n".join("    " + text for text in statement.sql.splitlines())
        return f"\n  statement ({migration.display(self.project_dir)}:{statement.line}):\n{body}"

    def _wait_connectable(self, container) -> None:
        """The final server answers on the published loopback port (what introspection uses):
        ``pg_isready``'s question (libpq's PQping: the server takes a connection request), which
        costs no authentication round trips; the first try almost always answers."""
        from psycopg import pq
        from psycopg.conninfo import make_conninfo

        deadline = time.monotonic() + 30
        self._read_password(container)
        target = make_conninfo(
            host=self.host_address,
            port=self.port.host_port,
            user=self.user,
            dbname="postgres",
            connect_timeout=3,
            sslmode="disable",  # a ping only: no TLS handshake for a request nobody authenticates
        ).encode()
        while (answer := pq.PGconn.ping(target)) != pq.Ping.OK:
            if time.monotonic() > deadline:
                reason = {
                    pq.Ping.REJECT: "the server rejects connections (still starting or shutting down)",
                    pq.Ping.NO_ATTEMPT: "libpq made no attempt (bad connection parameters)",
                }.get(answer, "no response")
                raise BackendError(
                    f"container {self.container_name} logged that it is ready, but "
                    f"{self.host_address}:{self.port.host_port} does not accept connections: {reason}",
                    hint="check that nothing else holds the port and that the engine publishes it "
                    "on this host (Docker Desktop: Settings > Resources > Network)",
                )
            time.sleep(0.02)

    # -- the running server ------------------------------------------------------------

    def start(self) -> None:
        self._read_password(self.resources.running_container())

    def conninfo(self, dbname: str | None = None) -> str:
        if self.password_file and not self.password:
            raise BackendError(
                f"the password of {self.container_name} is read from the container: start() first"
            )
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host_address,
            port=self.port.host_port,
            user=self.user,
            password=self.password,
            dbname=dbname or self.dbname,
        )

    def _read_password(self, container) -> None:
        """POSTGRES_PASSWORD_FILE's content as the entrypoint reads it (``$(< file)``: trailing
        newlines dropped), read once from the running container."""
        if self.password or not self.password_file:
            return
        exit_code, (out, err) = container.exec_run(["cat", "--", self.password_file], demux=True)
        if exit_code != 0:
            reason = (err or b"").decode("utf-8", "replace").strip() or f"exit code {exit_code}"
            raise BackendError(
                f"cannot read POSTGRES_PASSWORD_FILE {self.password_file} in container "
                f"{self.container_name}: {reason}",
                hint=f"mount the secret at {self.password_file} in {self.service.compose_file.name}, "
                "or set POSTGRES_PASSWORD",
            )
        self.password = secret_value(
            out or b"",
            source=f"POSTGRES_PASSWORD_FILE {self.password_file} (container {self.container_name})",
        )

    def apply(
        self,
        migrations: Sequence[Migration],
        *,
        dbname: str | None = None,
        reapply: bool = False,
        on_file=None,
    ) -> runner.ApplyResult:
        """The project's database: ``psql -f`` per mounted file inside the container, as a user
        applies them by hand. Any other database (a scratch or template one): the in-process
        runner over the published port."""
        if dbname not in (None, self.dbname):
            return super().apply(migrations, dbname=dbname, reapply=reapply, on_file=on_file)
        names.check_target(self.dbname, action="apply the migrations to", source=self.database_setting)
        mount = self.service.initdb_mount
        if mount is None:
            raise BackendError(
                f"{self.service.compose_file.name} mounts nothing at {compose.INITDB_DIR}",
                hint=f"mount the migrations directory read-only at {compose.INITDB_DIR}",
            )
        return psql.apply(
            self.resources.running_container(),
            migrations,
            mounted=psql.mounted_directory(self.project_dir, mount.source),
            user=self.user,
            dbname=self.dbname,
            port=self.port.container_port,
            reapply=reapply,
            project_dir=self.project_dir,
            on_file=on_file,
            conninfo=self.conninfo(),
        )

    def down(self) -> str:
        done = self.resources.remove(force=False, network=True)
        if not done:
            return f"docker: nothing of compose project {self.spec.project!r} to remove"
        return "docker: removed " + ", ".join(done)

    def describe(self) -> str:
        masked = _conninfo_text(
            host=self.host_address, port=self.port.host_port, user=self.user, dbname=self.dbname
        )
        secret = (
            " password=***"
            if self.password
            else f" password from {self.password_file}"
            if self.password_file
            else ""
        )
        volumes = ", ".join(self.service.volume_names.values())
        return (
            f"docker container {self.container_name} (image {self.service.image}, volume {volumes}, "
            f"network {self.spec.network_name}; {masked}{secret})"
        )
