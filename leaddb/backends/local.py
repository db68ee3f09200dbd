"""An embedded PostgreSQL 15 cluster made with ``initdb`` and ``pg_ctl``.

The server's lifecycle (init, start, wait, stop, log) lives in ``Cluster``; the
backend adds the database and the migrations. Everything sits in one directory
carrying a marker file, so ``down`` and ``reset`` never remove a directory this
workspace did not create. Run as root, the server runs as the ``postgres`` user
(``initdb`` and ``postgres`` refuse root).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from leaddb import compose, janitor, locks, platforms
from leaddb.backends.base import Backend, BootReport, Capabilities
from leaddb.console import say
from leaddb.errors import BackendError
from leaddb.migrations import Migration

MARKER = ".leaddb-cluster"
SERVER_USER = "postgres"
DEFAULT_DBNAME = "leadgen"
if not platforms.IS_WINDOWS:
    import pwd
# where Debian/Ubuntu's postgresql-15 package puts the server binaries (not on PATH by default)
PACKAGED_BINDIRS = (Path("/usr/lib/postgresql/15/bin"),)

# A throwaway development cluster: durability buys nothing here and costs seconds.
SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
    "shared_buffers": "64MB",
    "logging_collector": "off",
}


RAM_DISK = Path("/dev/shm")
RAM_DISK_MIN_FREE = 1 << 30


def scratch_root() -> Path:
    """Where throwaway clusters go: a RAM-backed tmpfs when there is one with room (the
    cluster is disposable and runs with fsync=off anyway; on a slow disk this halves
    initdb and makes CREATE DATABASE a memory copy), else the temp dir."""
    try:
        if (
            RAM_DISK.is_dir()
            and os.access(RAM_DISK, os.W_OK)
            and shutil.disk_usage(RAM_DISK).free >= RAM_DISK_MIN_FREE
        ):
            return RAM_DISK
    except OSError:
        pass
    return Path(tempfile.gettempdir())


def default_state_dir(project_dir: Path) -> Path:
    """Per-user, per-checkout, somewhere the server user can reach even when the
    checkout sits in root's home. ``LEADDB_STATE_DIR`` overrides."""
    override = os.environ.get("LEADDB_STATE_DIR")
    if override:
        return Path(override)
    user = getpass.getuser()
    digest = hashlib.sha256(str(project_dir.resolve()).encode()).hexdigest()[:10]
    return scratch_root() / f"leaddb-{user}-{digest}"


def find_binary(name: str) -> Path:
    """``initdb``/``pg_ctl`` from PATH, else from ``pg_config --bindir``."""
    exe = platforms.executable(name)
    found = shutil.which(exe)
    if found:
        return Path(found)
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
        if (Path(bindir) / exe).is_file():
            return Path(bindir) / exe
    for bindir in PACKAGED_BINDIRS:
        if (bindir / exe).is_file():
            return bindir / exe
    raise BackendError(
        f"PostgreSQL 15 server binary {name!r} not found on PATH or via pg_config",
        hint="install PostgreSQL 15 (Debian/Ubuntu: apt-get install postgresql-15; Windows: the EDB "
        "installer, then add its bin folder to PATH), or use --backend docker / --backend dsn",
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_taken(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (one of this cluster's own connections in
    TIME_WAIT does not count)."""
    return platforms.bind_probe("127.0.0.1", port) is not None


@dataclass
class ClusterState:
    port: int
    socket_dir: str
    password: str
    dbname: str


class Cluster:
    """One initdb'd data directory and the server running on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.state_file = root / "state.json"
        self.run_as_other_user = hasattr(os, "geteuid") and os.geteuid() == 0

    # -- ownership -------------------------------------------------------
    @property
    def exists(self) -> bool:
        return self.root.exists()

    def check_owned(self) -> None:
        if self.root.exists() and not (self.root / MARKER).is_file():
            raise BackendError(
                f"{self.root} exists but has no {MARKER} marker: it was not created by this tool",
                hint="refusing to touch it; set LEADDB_STATE_DIR to another directory or remove it yourself",
            )

    def state(self) -> ClusterState:
        try:
            return ClusterState(**json.loads(self.state_file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise BackendError(
                f"no local cluster at {self.root}", hint="run `invoke db.reset --backend local` first"
            ) from None
        except (OSError, ValueError, TypeError) as exc:
            raise BackendError(
                f"cannot read the local cluster's state {self.state_file}: {exc}",
                hint="`invoke db.reset --backend local` recreates the cluster; LEADDB_STATE_DIR moves it",
            ) from None

    # -- process helpers -------------------------------------------------
    def _as_server_user(self) -> dict:
        return platforms.run_as(SERVER_USER if self.run_as_other_user else None)

    def _run(self, argv: list[str], what: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """A program that leaves nothing running behind (initdb, pg_ctl stop), output captured."""
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                **self._as_server_user(),
            )
        except subprocess.TimeoutExpired:
            raise BackendError(
                f"{what} did not finish within {timeout:.0f} s{self._log_tail()}",
                hint="see the server log above; `invoke db.down` cleans up",
            ) from None
        except PermissionError as exc:
            raise BackendError(f"{what}: cannot run {argv[0]}: {exc}") from None
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()
            raise BackendError(
                f"{what} failed (exit {done.returncode}):\n  {output}{self._log_tail()}",
                hint="see the output above; `invoke db.down` removes the cluster",
            )
        return done

    def _log_size(self) -> int:
        try:
            return self.log.stat().st_size
        except OSError:
            return 0

    def _log_since(self, since: int) -> str:
        """What the server wrote after byte ``since`` (this start's, not older runs')."""
        if self._log_size() <= since:
            return ""
        try:
            with self.log.open("rb") as log:
                log.seek(since)
                return log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _log_tail(self, since: int = 0, lines: int = 20) -> str:
        """The last lines of :meth:`_log_since`, indented, for an error message."""
        tail = self._log_since(since).splitlines()[-lines:]
        return (
            "\n  server log (" + str(self.log) + "):\n" + "\n".join("    " + t for t in tail) if tail else ""
        )

    def _hand_to_server_user(self, path: Path) -> None:
        if self.run_as_other_user:
            shutil.chown(path, user=SERVER_USER)

    # -- lifecycle -------------------------------------------------------
    def init(self, dbname: str) -> ClusterState:
        initdb = find_binary("initdb")  # first: a missing binary must leave no half-made cluster
        if self.run_as_other_user:
            try:
                pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise BackendError(
                    f"running as root, the server must run as the {SERVER_USER!r} user, which does not exist",
                    hint=f"create it (useradd --system {SERVER_USER}, or install postgresql-15, which does), "
                    "or run the task as an unprivileged user",
                ) from None
        self.root.mkdir(parents=True)
        (self.root / MARKER).write_text(
            "created by leaddb; safe to remove with `invoke db.down`\n", encoding="utf-8", newline="\n"
        )
        self.root.chmod(0o755)
        self._hand_to_server_user(self.root)
        password = secrets.token_urlsafe(18)
        pwfile = self.root / "pwfile"
        with os.fdopen(
            os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8", newline="\n"
        ) as out:
            out.write(password + "\n")
        self._hand_to_server_user(pwfile)
        try:
            self._run(
                [
                    str(initdb),
                    "-D",
                    str(self.data),
                    "-U",
                    SERVER_USER,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--no-sync",
                    "--no-instructions",
                ],
                "initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        socket_dir = "" if platforms.IS_WINDOWS else str(self._make_socket_dir())
        state = ClusterState(free_port(), socket_dir, password, dbname)
        self._write_settings(state)
        self._write_state(state)
        return state

    def _make_socket_dir(self) -> Path:
        """Inside the cluster's own directory, so that nothing outside it is ever created or
        removed; the socket path must fit a sockaddr_un (107 bytes on Linux)."""
        directory = self.root / "run"
        if len(str(directory / ".s.PGSQL.65535")) > 100:
            raise BackendError(
                f"the local cluster's socket path under {self.root} is too long for a Unix socket",
                hint="point LEADDB_STATE_DIR at a shorter path",
            )
        directory.mkdir(mode=0o700)
        self._hand_to_server_user(directory)
        return directory

    def _write_state(self, state: ClusterState) -> None:
        self.state_file.write_text(json.dumps(asdict(state)), encoding="utf-8", newline="\n")
        self.state_file.chmod(0o600)

    def _write_settings(self, state: ClusterState) -> None:
        settings = {
            **SERVER_SETTINGS,
            "port": str(state.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{state.socket_dir}'",
        }
        with (self.data / "postgresql.conf").open("a", encoding="utf-8", newline="\n") as conf:
            conf.write("\n# leaddb throwaway cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self, timeout: float = 30) -> None:
        """Start the server; if another process has taken its port meanwhile, move the cluster
        to a new free port and try once more."""
        try:
            self._start(timeout)
        except BackendError:
            if self.is_running():  # another task started it at the same moment: use that server
                self._wait_ready(time.monotonic() + timeout)
                return
            state = self.state()
            if not port_is_taken(state.port):
                raise
            taken, state.port = state.port, free_port()
            say(f"local: port {taken} is taken by another process; moving the cluster to port {state.port}")
            with (self.data / "postgresql.conf").open("a", encoding="utf-8", newline="\n") as conf:
                conf.write(f"port = {state.port}  # leaddb: port {taken} was taken\n")
            self._write_state(state)
            self._start(timeout)

    def _start(self, timeout: float) -> None:
        """``pg_ctl start -w``: pg_ctl waits for the postmaster's own "ready" in postmaster.pid
        (and tells a crashed server's stale file from the new one's)."""
        log_from = self._log_size()
        output = self.root / "pg_ctl.out"
        argv = [
            str(find_binary("pg_ctl")),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        ]
        io = platforms.background_start_io(output)
        try:
            done = subprocess.run(argv, timeout=timeout + 10, **io, **self._as_server_user())
        except subprocess.TimeoutExpired:
            raise BackendError(
                f"the local PostgreSQL server was not ready within {timeout:.0f} s{self._log_tail(log_from)}",
                hint="see the server log above; `invoke db.down` removes the cluster",
            ) from None
        except PermissionError as exc:
            raise BackendError(f"starting the local PostgreSQL server: cannot run {argv[0]}: {exc}") from None
        finally:
            io["stdout"].close()
        if done.returncode != 0:
            said = output.read_text(encoding="utf-8", errors="replace").strip()
            raise BackendError(
                "the local PostgreSQL server exited during start-up"
                + (f"\n  pg_ctl: {said.splitlines()[-1]}" if said else "")
                + self._log_tail(log_from),
                hint="see the server log above; `invoke db.down` removes the cluster",
            )

    def _wait_ready(self, deadline: float) -> None:
        """For a server another task is starting: until its postmaster.pid says "ready"."""
        while self._postmaster_lock()[1] != "ready":
            if time.monotonic() > deadline or not self.is_running():
                raise BackendError(
                    f"the local PostgreSQL server started by another task did not become ready"
                    f"{self._log_tail()}",
                    hint="see the server log above; `invoke db.down` removes the cluster",
                )
            time.sleep(0.02)

    def _postmaster_lock(self) -> tuple[int | None, str | None]:
        """The pid (line 1) and status (line 8: starting, stopping, ready or standby) of
        ``postmaster.pid``, from one read; (None, None) when there is no file."""
        try:
            lines = (self.data / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        except OSError:
            return None, None
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            pid = None  # the new postmaster has created the file but not written it yet
        return pid, (lines[7].strip() if len(lines) > 7 else "starting")

    def _is_our_postmaster(self, pid: int) -> bool:
        """``pid`` is alive and is this cluster's server, so that after a crash or a reboot a
        recycled pid is never signalled: the postmaster works in its data directory, and
        pg_ctl started it with ``-D`` and that directory. (POSIX only; where there is no
        ``/proc``, alive is all that is checked.)"""
        if not _alive(pid):
            return False
        proc = Path(f"/proc/{pid}")
        if not Path("/proc/self").exists():
            return True
        data = self.data.resolve()
        try:
            return Path(os.readlink(proc / "cwd")) == data
        except PermissionError:  # another user's process without ptrace rights: its arguments
            try:
                args = [os.fsdecode(a) for a in (proc / "cmdline").read_bytes().split(b"\0")]
            except OSError:
                return False
            return any(
                flag == "-D" and Path(value).resolve() == data
                for flag, value in zip(args, args[1:], strict=False)
            )
        except FileNotFoundError:  # gone meanwhile, or hidden (/proc mounted with hidepid):
            return _alive(pid) and not proc.exists()  # a hidden live pid is trusted
        except OSError:
            return False

    def is_running(self) -> bool:
        if not self.data.is_dir():
            return False
        done = subprocess.run(
            [str(find_binary("pg_ctl")), "-D", str(self.data), "status"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self._as_server_user(),
        )
        return done.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -w`` in ``mode`` (fast, or immediate for a cluster about to be removed);
        never when postmaster.pid names a pid that is not this cluster's server (after a crash
        or a reboot the system may have given it to an unrelated process)."""
        pid = self._postmaster_lock()[0]
        if pid is None:
            return
        if not platforms.IS_WINDOWS and not self._is_our_postmaster(pid):
            return  # a stale postmaster.pid: its pid is gone, or now another process's
        if not self.is_running():
            return
        self._run(
            [str(find_binary("pg_ctl")), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"],
            "stopping the local PostgreSQL server",
            timeout=70,
        )

    def remove(self) -> None:
        """Stop the server (immediate: the cluster is thrown away) and remove the directory."""
        self.check_owned()
        if not self.root.exists():
            return
        self.stop("immediate")
        platforms.remove_tree(self.root)

    def conninfo(self, dbname: str | None = None) -> str:
        state = self.state()
        if state.socket_dir:
            params = {"host": state.socket_dir, "port": state.port, "user": SERVER_USER}
        else:
            params = {
                "host": "127.0.0.1",
                "port": state.port,
                "user": SERVER_USER,
                "password": state.password,
            }
        return psycopg.conninfo.make_conninfo(dbname=dbname or state.dbname, **params)


def _alive(pid: int) -> bool:
    """Running and not a zombie (a zombie still answers kill(pid, 0))."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class LocalBackend(Backend):
    name = "local"
    capabilities = Capabilities(owns_server=True)

    def __init__(self, project_dir: Path, state_dir: Path | None = None) -> None:
        super().__init__(project_dir)
        self.cluster = Cluster((state_dir or default_state_dir(project_dir)) / "cluster")

    def _dbname(self) -> str:
        try:
            env = compose.load_service(self.project_dir).environment
        except compose.ComposeError:
            env = {}
        return env.get("POSTGRES_DB") or DEFAULT_DBNAME

    def lock(self, task: str, *, shared: bool = False):
        state_dir = self.cluster.root.parent
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendError(
                f"cannot create the local cluster under {state_dir}: {exc}",
                hint="point LEADDB_STATE_DIR at a writable directory on a disk with room",
            ) from None
        return locks.hold(state_dir / "reset.lock", task, str(self.cluster.root), shared=shared)

    def reset(self, migrations: Sequence[Migration], *, force: bool = False) -> BootReport:
        report = BootReport(self.name)
        try:
            self.cluster.check_owned()
            with report.phase("remove"):
                self.cluster.remove()
            with report.phase("initdb"):
                state = self.cluster.init(self._dbname())
            with report.phase("start"):
                self.cluster.start()
        except OSError as exc:  # the state directory cannot be created, written or removed
            raise BackendError(
                f"cannot create the local cluster under {self.cluster.root.parent}: {exc}",
                hint="point LEADDB_STATE_DIR at a writable directory on a disk with room",
            ) from None
        with report.phase("createdb"), janitor.maintenance(self.cluster.conninfo("postgres")) as conn:
            janitor.create_database(conn, state.dbname)
        with report.phase("apply"):
            report.apply = self.apply(migrations)
        return report

    def start(self) -> None:
        self.cluster.check_owned()
        self.cluster.state()
        if not self.cluster.is_running():
            self.cluster.start()

    def conninfo(self, dbname: str | None = None) -> str:
        return self.cluster.conninfo(dbname)

    def down(self) -> str:
        if not self.cluster.exists:
            return f"local: no cluster at {self.cluster.root}; nothing to do"
        self.cluster.remove()
        return f"local: stopped the server and removed {self.cluster.root}"

    def describe(self) -> str:
        try:
            state = self.cluster.state()
        except BackendError:
            return f"local cluster at {self.cluster.root} (not created)"
        where = state.socket_dir or "127.0.0.1"
        return (
            f"local cluster {self.cluster.root} (socket {where}, port {state.port}, database {state.dbname})"
        )
