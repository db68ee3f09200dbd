"""The executor: one local PostgreSQL cluster's lifecycle, as pytest-postgresql's executor has it
(a data directory copied from the pristine, start, wait, stop, its log: on POSIX the postmaster
itself, started and signalled here, pg_ctl's work without its 100 ms polls; on Windows
``pg_ctl``), and the one way its programs run (:func:`run_program`). It knows nothing of
backends, databases or the migrations: ``leaddb/backends/local.py`` is the backend over it,
``leaddb/backends/pristine.py`` the ``initdb`` output it copies.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from leaddb import nofollow, permissions, platforms, tombstones
from leaddb.console import say
from leaddb.errors import BackendError

if TYPE_CHECKING:
    from leaddb.backends.pristine import Pristine

MARKER = ".leaddb-cluster"
SERVER_USER = permissions.SERVER_USER
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


def find_binary(name: str) -> Path:
    """``initdb``/``pg_ctl`` from PATH, else from ``pg_config --bindir``."""
    exe = platforms.executable(name)
    found = shutil.which(exe)
    if found:
        return Path(found)
    bindir = platforms.pg_config_bindir()
    if bindir is not None and (bindir / exe).is_file():
        return bindir / exe
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


def run_program(
    argv: list[str], what: str, *, timeout: float, late: str, tail, **kwargs
) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program (initdb, pg_ctl) to its end: a timeout (``late`` says what it
    means, then the server log's ``tail()``) or a program that cannot be run is one BackendError."""
    try:
        return subprocess.run(argv, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired:
        raise BackendError(
            f"{late}{tail()}", hint="see the server log above; `invoke db.down` removes the cluster"
        ) from None
    except PermissionError as exc:
        raise BackendError(f"{what}: cannot run {argv[0]}: {exc}") from None


def run_captured(argv: list[str], what: str, timeout: float, tail, **kwargs) -> subprocess.CompletedProcess:
    """A program that leaves nothing running behind (initdb, pg_ctl stop), output captured."""
    done = run_program(
        argv,
        what,
        timeout=timeout,
        late=f"{what} did not finish within {timeout:.0f} s",
        tail=tail,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        **kwargs,
    )
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()
        raise BackendError(
            f"{what} failed (exit {done.returncode}):\n  {output}{tail()}",
            hint="see the output above; `invoke db.down` removes the cluster",
        )
    return done


def chown_tree(top: Path, uid: int, gid: int) -> None:
    """Everything under ``top`` (not ``top`` itself) to ``uid:gid``, links themselves, never
    their targets. Only for a tree nobody else can reach meanwhile (its top is ours, 0700)."""
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            platforms.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)


class Cluster:
    """One data directory, copied from the pristine, and the server running on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.state_file = root / "state.json"
        self.run_as_other_user = platforms.running_as_root()

    # -- ownership -------------------------------------------------------
    @property
    def exists(self) -> bool:
        return os.path.lexists(self.root)

    def check_owned(self) -> None:
        if self.exists and not nofollow.is_regular_file(self.root / MARKER):
            raise BackendError(
                f"{self.root} exists but has no {MARKER} marker: it was not created by this tool",
                hint="refusing to touch it; set LEADDB_STATE_DIR to another directory or remove it yourself",
            )

    def state(self) -> ClusterState:
        """What ``state.json`` says, read without following a link; a socket directory it names
        is used only when it lies inside this cluster's directory (an older layout's may not)."""
        try:
            raw = json.loads(nofollow.read_utf8(self.state_file))
            state = ClusterState(**raw)
            if not isinstance(state.port, int) or not all(
                isinstance(v, str) for v in (state.socket_dir, state.password, state.dbname)
            ):
                raise TypeError("unexpected value types")
        except FileNotFoundError:
            raise BackendError(
                f"no local cluster at {self.root}", hint="run `invoke db.reset --backend local` first"
            ) from None
        except (OSError, ValueError, TypeError) as exc:
            raise BackendError(
                f"cannot read the local cluster's state {self.state_file}: {exc}",
                hint="`invoke db.reset --backend local` recreates the cluster; LEADDB_STATE_DIR moves it",
            ) from None
        if state.socket_dir and not permissions.inside(state.socket_dir, self.root):
            raise BackendError(
                f"{self.state_file} names the socket directory {state.socket_dir}, outside the "
                f"cluster's directory {self.root}: it is not used (nor ever removed)",
                hint="`invoke db.reset --backend local` recreates the cluster with its socket inside it",
            )
        return state

    # -- process helpers -------------------------------------------------
    def _as_server_user(self) -> dict:
        return platforms.run_as(SERVER_USER if self.run_as_other_user else None)

    def _run(self, argv: list[str], what: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return run_captured(argv, what, timeout, self._log_tail, **self._as_server_user())

    def _log_size(self) -> int:
        try:
            return os.lstat(self.log).st_size
        except OSError:
            return 0

    def _log_since(self, since: int) -> str:
        """What the server wrote after byte ``since`` (this start's, not older runs')."""
        if self._log_size() <= since:
            return ""
        try:
            with os.fdopen(nofollow.open_nofollow(self.log, os.O_RDONLY), "rb") as log:
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

    # -- lifecycle -------------------------------------------------------
    def create(self, pristine: Pristine, dbname: str) -> ClusterState:
        """A new cluster from the pristine: built in a tombstone nobody else can enter (marker,
        data, settings, state), handed to the server user, then renamed into place; the
        password is still the pristine's until :meth:`set_password`."""
        ids = permissions.server_ids(required=True) if self.run_as_other_user else None
        state_dir = self.root.parent
        staging = tombstones.new_tombstone(state_dir, "cluster")
        nofollow.replace_utf8(staging / MARKER, "created by leaddb; safe to remove with `invoke db.down`\n")
        try:  # each entry the server user's as it is made: no second walk to chown them
            platforms.copy_tree(pristine.data, staging / "data", ids)
        except OSError:  # a full disk, most likely: said once, by the caller
            shutil.rmtree(staging, ignore_errors=True)  # not left to fill the disk until the next reset
            raise
        socket_dir = str(self._make_socket_dir(staging)) if platforms.server_sockets_are_files() else ""
        state = ClusterState(free_port(), socket_dir, pristine.password, dbname)
        self._write_settings(state, staging / "data")
        self._write_state(state, staging)
        nofollow.replace_utf8(staging / self.log.name, "")  # the server's, like the rest
        if ids:
            for entry in os.scandir(staging):  # what was written above (data/ is theirs already)
                platforms.chown(entry.path, *ids, follow_symlinks=False)
            platforms.chown(staging, *ids)
        platforms.rename(staging, self.root)  # retried on Windows while a scanner holds a file
        return state

    def set_password(self, conn: psycopg.Connection, state: ClusterState) -> ClusterState:
        """A password of this cluster's own (a copy starts with the pristine's): sent as its
        SCRAM verifier, computed here, so the password itself never reaches the server."""
        password = secrets.token_urlsafe(18)
        verifier = conn.pgconn.encrypt_password(password.encode(), SERVER_USER.encode(), b"scram-sha-256")
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(SERVER_USER), sql.Literal(verifier.decode())
            )
        )
        state.password = password
        self._write_state(state)
        return state

    def _make_socket_dir(self, staging: Path) -> Path:
        """Inside the cluster's own directory, so that nothing outside it is ever created or
        removed; the socket path must fit a sockaddr_un (107 bytes on Linux)."""
        directory = self.root / "run"
        if len(str(directory / ".s.PGSQL.65535")) > 100:
            raise BackendError(
                f"the local cluster's socket path under {self.root} is too long for a Unix socket",
                hint="point LEADDB_STATE_DIR at a shorter path",
            )
        (staging / "run").mkdir(mode=0o700)
        return directory

    def _write_state(self, state: ClusterState, root: Path | None = None) -> None:
        nofollow.replace_utf8((root or self.root) / "state.json", json.dumps(asdict(state)))

    def _write_settings(self, state: ClusterState, data: Path | None = None) -> None:
        settings = {
            **SERVER_SETTINGS,
            "port": str(state.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{state.socket_dir}'",
        }
        nofollow.append_utf8(
            (data or self.data) / "postgresql.conf",
            "\n# leaddb throwaway cluster\n"
            + "".join(f"{key} = {value}\n" for key, value in settings.items()),
        )

    def start(self, timeout: float = 30, meanwhile: Callable[[], object] | None = None) -> None:
        """Start the server; if another process has taken its port meanwhile, move the cluster
        to a new free port and try once more. ``meanwhile`` is done once while the server
        starts up (after it is launched, before the wait for it)."""
        try:
            self._start(timeout, meanwhile)
        except BackendError:
            if self.is_running():  # another task started it at the same moment: use that server
                self._wait_ready(time.monotonic() + timeout)
                return
            state = self.state()
            if not port_is_taken(state.port):
                raise
            taken, state.port = state.port, free_port()
            say(f"local: port {taken} is taken by another process; moving the cluster to port {state.port}")
            nofollow.append_utf8(
                self.data / "postgresql.conf", f"port = {state.port}  # leaddb: port {taken} was taken\n"
            )
            self._write_state(state)
            self._start(timeout)

    def _start(self, timeout: float, meanwhile: Callable[[], object] | None = None) -> None:
        if platforms.can_identify_postmaster():
            self._launch(timeout, meanwhile or (lambda: None))
        else:
            if meanwhile is not None:
                meanwhile()
            self._pg_ctl_start(timeout)

    def _launch(self, timeout: float, meanwhile: Callable[[], object] = lambda: None) -> None:
        """``postgres -D`` started as ``pg_ctl start`` starts it (its own session, its output
        appended to the log, as the server user), then waited for as ``pg_ctl -w`` waits: until
        postmaster.pid names this very process as "ready", with a start time not older than this
        launch (a crashed server's stale file is not the new one's); or until the process exits,
        which is a failed start. Polled every few milliseconds where pg_ctl sleeps 100 ms."""
        log_from = self._log_size()
        postgres = str(find_binary("postgres"))
        log = self._open_log()
        launched = time.time()
        try:
            server = platforms.start_detached(
                [postgres, "-D", str(self.data)],
                log,
                SERVER_USER if self.run_as_other_user else None,
                cwd=self.data,
            )
        except OSError as exc:
            raise BackendError(
                f"starting the local PostgreSQL server: cannot run {postgres}: {exc}"
            ) from None
        finally:
            os.close(log)
        try:
            meanwhile()
        except BaseException:
            platforms.let_go(server)
            raise
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            exited = server.poll()
            pid, status, started = self._postmaster_lock()
            if pid == server.pid and status == "ready" and started is not None and started >= launched - 2:
                platforms.let_go(server)
                return
            if exited is not None:
                raise BackendError(
                    f"the local PostgreSQL server exited during start-up (exit {exited})"
                    + self._log_tail(log_from),
                    hint="see the server log above; `invoke db.down` removes the cluster",
                )
            if time.monotonic() > deadline:
                platforms.let_go(server)  # left starting, as pg_ctl -w leaves it
                raise BackendError(
                    f"the local PostgreSQL server was not ready within {timeout:.0f} s"
                    + self._log_tail(log_from),
                    hint="see the server log above; `invoke db.down` removes the cluster",
                )
            time.sleep(pause)
            pause = min(pause * 1.5, 0.02)

    def _open_log(self) -> int:
        """The server log, opened for appending (made when missing), never through a link
        planted at its name nor a second name of another file (the server user can write in
        the cluster's directory), never blocking on a FIFO."""
        refused = BackendError(
            f"the server log {self.log} is not a regular file of its own (a link or another kind "
            "of file was put in its place): refusing to write to it",
            hint="`invoke db.reset --backend local` recreates the cluster",
        )
        try:
            fd = nofollow.open_nofollow(
                self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0)
            )
        except OSError as exc:
            if os.path.islink(self.log) or not os.path.isfile(self.log):
                raise refused from None
            raise BackendError(f"cannot open the server log {self.log}: {exc}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise refused
        return fd

    def _pg_ctl_start(self, timeout: float) -> None:
        """``pg_ctl start -w`` (Windows: pg_ctl starts the postmaster with a restricted token
        and waits for the postmaster's own "ready" in postmaster.pid)."""
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
            done = run_program(
                argv,
                "starting the local PostgreSQL server",
                timeout=timeout + 10,
                late=f"the local PostgreSQL server was not ready within {timeout:.0f} s",
                tail=lambda: self._log_tail(log_from),
                **io,
                **self._as_server_user(),
            )
        finally:
            io["stdout"].close()
        if done.returncode != 0:
            said = nofollow.read_bytes(output).decode("utf-8", errors="replace").strip()
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

    def _postmaster_lock(self) -> tuple[int | None, str | None, int | None]:
        """The pid (line 1), status (line 8: starting, stopping, ready or standby) and start
        time (line 3, seconds since the epoch) of ``postmaster.pid``, from one read; (None,
        None, None) when there is no file."""
        try:
            lines = nofollow.read_utf8(self.data / "postmaster.pid").splitlines()
        except (OSError, UnicodeDecodeError):
            return None, None, None
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            pid = None  # the new postmaster has created the file but not written it yet
        try:
            started = int(lines[2])
        except (IndexError, ValueError):
            started = None
        return pid, (lines[7].strip() if len(lines) > 7 else "starting"), started

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
        """Whether this cluster's server runs (POSIX: postmaster.pid names a live process that
        is this cluster's postmaster; elsewhere, ``pg_ctl status``)."""
        if not self.data.is_dir():
            return False
        if platforms.can_identify_postmaster():
            pid = self._postmaster_lock()[0]
            return pid is not None and self._is_our_postmaster(pid)
        done = subprocess.run(
            [str(find_binary("pg_ctl")), "-D", str(self.data), "status"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **self._as_server_user(),
        )
        return done.returncode == 0

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server in ``mode`` (fast, or immediate for a cluster about to be removed),
        and wait until it has stopped (POSIX: :meth:`_signal_stop`; elsewhere ``pg_ctl stop
        -w``); never when postmaster.pid names a pid that is not this cluster's server (after a crash
        or a reboot the system may have given it to an unrelated process). Whether a server
        was stopped."""
        pid = self._postmaster_lock()[0]
        if pid is None:
            return False
        if platforms.can_identify_postmaster():
            if not self._is_our_postmaster(pid):
                return False  # a stale postmaster.pid: its pid is gone, or now another process's
            return self._signal_stop(pid, mode)
        if not self.is_running():
            return False
        self._run(
            [str(find_binary("pg_ctl")), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"],
            "stopping the local PostgreSQL server",
            timeout=70,
        )
        return True

    def _signal_stop(self, pid: int, mode: str, timeout: float = 60) -> bool:
        """What ``pg_ctl stop -w`` does (POSIX): the mode's signal to the postmaster, then a wait
        until it has removed postmaster.pid (its last act) or is gone, polled every few
        milliseconds where pg_ctl sleeps 100 ms."""
        try:
            platforms.stop_postmaster(pid, mode)
        except ProcessLookupError:
            return False  # it ended meanwhile
        deadline = time.monotonic() + timeout
        pause = 0.001
        while self._postmaster_lock()[0] == pid and _alive(pid):
            if time.monotonic() > deadline:
                raise BackendError(
                    f"stopping the local PostgreSQL server: it did not stop within {timeout:.0f} s"
                    f"{self._log_tail()}",
                    hint="see the server log above; `invoke db.down` removes the cluster",
                )
            time.sleep(pause)
            pause = min(pause * 1.5, 0.02)
        return True

    def remove(self) -> bool:
        """Stop the server (immediate: the cluster is thrown away), bury the directory (one
        atomic rename into a tombstone: from then on an interruption leaves only garbage that
        the next reset or down removes, never a cluster without its marker), remove the
        tombstone. Whether a server was stopped."""
        stopped, tomb = self.bury()
        if tomb is not None:
            platforms.remove_tree(tomb)
        return stopped

    def bury(self) -> tuple[bool, Path | None]:
        """:meth:`remove` but the tombstone's removal, left to the caller (a reset removes it
        while the new server starts): whether a server was stopped, and the tombstone."""
        self.check_owned()
        if not self.exists:
            return False, None
        stopped = self.stop("immediate")
        return stopped, tombstones.bury(self.root, self.root.parent)

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


def _stop_buried_server(tomb: Path) -> bool:
    """A tombstone of a cluster whose server an interrupted task left running: stop it first."""
    return (tomb / "data").is_dir() and Cluster(tomb).stop("immediate")
