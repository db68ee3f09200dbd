"""An embedded PostgreSQL 15 cluster made with ``initdb`` and ``pg_ctl``.

The server's lifecycle (init, start, wait, stop, log) lives in ``Cluster``; the
backend adds the database and the migrations. A checkout's cluster sits in its private state
directory (``leaddb.statedir``: the invoking user's, checked on every use), in a directory
carrying a marker file, so ``down`` and ``reset`` never remove a directory this workspace did
not create, beside the task lock. Every reset copies the user's one pristine ``initdb`` output
(``Pristine``, in the directory all checkouts share) instead of running ``initdb`` again. Run as
root, the server runs as the ``postgres`` user (``initdb`` and ``postgres`` refuse root).

Nothing outlives its checkout: every local task first removes what deleted checkouts left
(:func:`sweep_vanished`: their servers stopped, their state directories and pointers removed),
and ``db.down --all`` removes everything of the user's (:func:`remove_everything`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import psycopg
from psycopg import sql

from leaddb import compose, janitor, locks, platforms, statedir
from leaddb.backends.base import Backend, BootReport, Capabilities
from leaddb.console import say
from leaddb.errors import BackendError, LeadDbError
from leaddb.migrations import Migration
from leaddb.statedir import scratch_root  # noqa: F401 - where the tests put their state dirs

MARKER = ".leaddb-cluster"
SERVER_USER = statedir.SERVER_USER
DEFAULT_DBNAME = "leadgen"
INITDB_ARGS = (
    "-U",
    SERVER_USER,
    "-E",
    "UTF8",
    "--locale=C",
    "--auth-local=trust",
    "--auth-host=scram-sha-256",
    "--no-sync",
    "--no-instructions",
)
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


def _run_captured(argv: list[str], what: str, timeout: float, tail, **kwargs) -> subprocess.CompletedProcess:
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


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    """Everything under ``top`` (not ``top`` itself) to ``uid:gid``, links themselves, never
    their targets. Only for a tree nobody else can reach meanwhile (its top is ours, 0700)."""
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            platforms.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)


def _timezone() -> list:
    """What ``initdb`` reads to choose the cluster's timezone (TZ, else the system's)."""
    localtime = Path("/etc/localtime")
    return [os.environ.get("TZ"), os.path.realpath(localtime) if localtime.exists() else None, time.tzname]


def pristine_key(initdb: Path) -> dict:
    """What makes ``initdb`` write something else: the PostgreSQL version (``initdb
    --version``), the binary itself (its resolved path, size and mtime: another build of the
    same version may differ), the arguments (encoding, locale, authentication) and the timezone
    ``initdb`` writes into ``postgresql.conf``."""
    resolved = initdb.resolve()
    st = resolved.stat()
    version = subprocess.run(
        [str(initdb), "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True
    ).stdout.strip()
    key = {
        "version": version,
        "initdb": [str(resolved), st.st_size, st.st_mtime_ns],
        "args": list(INITDB_ARGS),
        "timezone": _timezone(),
    }
    return json.loads(json.dumps(key, sort_keys=True))  # as key.json reads back (tuples become lists)


class Pristine:
    """One ``initdb`` output, never started, that each reset copies: a new, empty cluster
    without paying ``initdb`` again (testing.postgresql's cached initdb).

    It is the user's, shared by every checkout (``statedir.shared_dir``, on the RAM disk when
    there is room), one per :func:`pristine_key`: a new key builds a new pristine and buries the
    old ones. Copies are made under the shared lock (``statedir.shared_lock``), builds and
    removals under the exclusive one (:func:`shared_pristine`). It is built in a tombstone and
    renamed into place when complete, so an interrupted build leaves only a tombstone. Run as
    root, it is handed back to root after ``initdb`` (the server user never touches it again),
    and each copy is handed to the server user before it is moved into place.
    """

    PREFIX = "pristine-"

    def __init__(self, home: Path, initdb: Path, key: dict) -> None:
        self.home = home
        self.initdb = initdb
        self.key = key
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.root = home / f"{self.PREFIX}{digest}"
        self.data = self.root / "data"

    @property
    def ready(self) -> bool:
        try:
            return json.loads(statedir.read_utf8(self.root / "key.json")) == self.key
        except (OSError, ValueError):
            return False

    @property
    def password(self) -> str:
        """The superuser password ``initdb`` set; each copy replaces it (``Cluster.set_password``)."""
        return statedir.read_utf8(self.root / "password").strip()

    def build(self) -> None:
        """``initdb`` into a tombstone, moved into place whole; the caller holds the exclusive lock."""
        ids = statedir.server_ids(required=True)
        staging = statedir.new_tombstone(self.home, "pristine")
        if ids:
            platforms.chown(staging, ids[0], ids[1])  # initdb (as the server user) creates data/ in it
        password = secrets.token_urlsafe(18)
        pwfile = staging / "pwfile"
        fd = statedir.open_nofollow(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(password + "\n")
        if ids:
            platforms.chown(pwfile, ids[0], ids[1])
        try:
            _run_captured(
                [str(self.initdb), "-D", str(staging / "data"), *INITDB_ARGS, f"--pwfile={pwfile}"],
                "initdb",
                120,
                lambda: "",
                **platforms.run_as(SERVER_USER if ids else None),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if ids:  # back to us: from here on the server user can change nothing a copy is made of
            platforms.chown(staging, *platforms.effective_ids())
            _chown_tree(staging, *platforms.effective_ids())
        for name, text in (("password", password + "\n"), ("key.json", json.dumps(self.key))):
            statedir.replace_utf8(staging / name, text)
        for entry in self.home.glob(f"{self.PREFIX}*"):  # another key's: stale
            statedir.remove(entry, self.home)
        platforms.rename(staging, self.root)  # retried on Windows while a scanner holds a file


PRISTINE_WAIT = 180.0  # seconds a task waits for another's pristine build (initdb's own limit: 120)


@contextmanager
def shared_pristine(initdb: Path, cold_phase: Callable[[], AbstractContextManager]) -> Iterator[Pristine]:
    """The user's pristine for ``initdb``, held (the shared lock) while the caller copies it;
    built first under the exclusive lock (timed in ``cold_phase()``) when it is missing or
    stale, after leftovers of an interrupted build are cleared."""
    key = pristine_key(initdb)
    lock = statedir.shared_lock()
    with locks.waiting(lock, shared=True, timeout=PRISTINE_WAIT):
        home = statedir.shared_dir(create=False)
        pristine = Pristine(home, initdb, key) if home is not None else None
        if pristine is not None and pristine.ready:
            yield pristine
            return
    with locks.waiting(lock, timeout=PRISTINE_WAIT):
        home = statedir.shared_dir(create=True)
        pristine = Pristine(home, initdb, key)
        if not pristine.ready:  # still: no other task built it while this one waited
            with cold_phase():
                statedir.clear_tombstones(home)
                pristine.build()
        yield pristine


def drop_pristines() -> Path | None:
    """Remove every pristine of the user's (the next reset of any checkout runs ``initdb``);
    the shared directory it was in, or None when there was none."""
    with locks.waiting(statedir.shared_lock(), timeout=PRISTINE_WAIT):
        home = statedir.shared_dir(create=False)
        if home is None:
            return None
        for entry in home.glob(f"{Pristine.PREFIX}*"):
            statedir.remove(entry, home)
        statedir.clear_tombstones(home)
        return home


class _CopyFailed(Exception):
    """Ends a copy at its first failure (``copytree`` would go on through every file)."""


def _copy_file(source: str, target: str) -> str:
    try:
        return shutil.copy(source, target)
    except OSError as exc:
        raise _CopyFailed(exc) from exc


class Cluster:
    """One data directory, copied from the pristine, and the server running on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.state_file = root / "state.json"
        self.run_as_other_user = statedir.running_as_root()

    # -- ownership -------------------------------------------------------
    @property
    def exists(self) -> bool:
        return os.path.lexists(self.root)

    def check_owned(self) -> None:
        if self.exists and not statedir.is_regular_file(self.root / MARKER):
            raise BackendError(
                f"{self.root} exists but has no {MARKER} marker: it was not created by this tool",
                hint="refusing to touch it; set LEADDB_STATE_DIR to another directory or remove it yourself",
            )

    def state(self) -> ClusterState:
        """What ``state.json`` says, read without following a link; a socket directory it names
        is used only when it lies inside this cluster's directory (an older layout's may not)."""
        try:
            raw = json.loads(statedir.read_utf8(self.state_file))
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
        if state.socket_dir and not statedir.inside(state.socket_dir, self.root):
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
        return _run_captured(argv, what, timeout, self._log_tail, **self._as_server_user())

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
            with os.fdopen(statedir.open_nofollow(self.log, os.O_RDONLY), "rb") as log:
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
        ids = statedir.server_ids(required=True) if self.run_as_other_user else None
        state_dir = self.root.parent
        staging = statedir.new_tombstone(state_dir, "cluster")
        statedir.replace_utf8(staging / MARKER, "created by leaddb; safe to remove with `invoke db.down`\n")
        try:
            shutil.copytree(pristine.data, staging / "data", symlinks=True, copy_function=_copy_file)
        except (_CopyFailed, shutil.Error) as failed:  # a full disk, most likely: say it once
            error = failed.args[0] if isinstance(failed, _CopyFailed) else OSError(failed.args[0][0][2])
            shutil.rmtree(staging, ignore_errors=True)  # not left to fill the disk until the next reset
            raise error from None
        socket_dir = str(self._make_socket_dir(staging)) if platforms.server_sockets_are_files() else ""
        state = ClusterState(free_port(), socket_dir, pristine.password, dbname)
        self._write_settings(state, staging / "data")
        self._write_state(state, staging)
        if ids:
            _chown_tree(staging, *ids)  # the directories and the files written above
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
        statedir.replace_utf8((root or self.root) / "state.json", json.dumps(asdict(state)))

    def _write_settings(self, state: ClusterState, data: Path | None = None) -> None:
        settings = {
            **SERVER_SETTINGS,
            "port": str(state.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{state.socket_dir}'",
        }
        statedir.append_utf8(
            (data or self.data) / "postgresql.conf",
            "\n# leaddb throwaway cluster\n"
            + "".join(f"{key} = {value}\n" for key, value in settings.items()),
        )

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
            statedir.append_utf8(
                self.data / "postgresql.conf", f"port = {state.port}  # leaddb: port {taken} was taken\n"
            )
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
            said = statedir.read_bytes(output).decode("utf-8", errors="replace").strip()
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
            lines = statedir.read_utf8(self.data / "postmaster.pid").splitlines()
        except (OSError, UnicodeDecodeError):
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

    def stop(self, mode: str = "fast") -> bool:
        """``pg_ctl stop -w`` in ``mode`` (fast, or immediate for a cluster about to be removed);
        never when postmaster.pid names a pid that is not this cluster's server (after a crash
        or a reboot the system may have given it to an unrelated process). Whether a server
        was stopped."""
        pid = self._postmaster_lock()[0]
        if pid is None:
            return False
        if platforms.can_identify_postmaster() and not self._is_our_postmaster(pid):
            return False  # a stale postmaster.pid: its pid is gone, or now another process's
        if not self.is_running():
            return False
        self._run(
            [str(find_binary("pg_ctl")), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"],
            "stopping the local PostgreSQL server",
            timeout=70,
        )
        return True

    def remove(self) -> bool:
        """Stop the server (immediate: the cluster is thrown away), bury the directory (one
        atomic rename into a tombstone: from then on an interruption leaves only garbage that
        the next reset or down removes, never a cluster without its marker), remove the
        tombstone. Whether a server was stopped."""
        self.check_owned()
        if not self.exists:
            return False
        stopped = self.stop("immediate")
        statedir.remove(self.root, self.root.parent)
        return stopped

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


class LocalBackend(Backend):
    name = "local"
    capabilities = Capabilities(owns_server=True, cached_init=True, fresh_boot_goal=1.8)
    built = "the local cluster"

    def __init__(self, project_dir: Path, state_dir: Path | None = None) -> None:
        super().__init__(project_dir)
        self._chosen_state_dir = state_dir

    @cached_property
    def state_dir(self) -> Path:
        """The checkout's private state directory (``leaddb.statedir``), made on first use."""
        return statedir.for_checkout(self.project_dir, self._chosen_state_dir)

    @cached_property
    def cluster(self) -> Cluster:
        return Cluster(self.state_dir / "cluster")

    def _private(self) -> Path:
        """The state directory, checked again by every task that uses it."""
        return statedir.recheck(self.state_dir)

    def _dbname(self) -> str:
        try:
            env = compose.load_service(self.project_dir).environment
        except compose.ComposeError:
            env = {}
        name = env.get("POSTGRES_DB") or DEFAULT_DBNAME
        janitor.check_target(name, action="create", source=self.database_setting)  # before anything
        return name

    def lock(self, task: str, *, shared: bool = False):
        return locks.hold(self._private() / "reset.lock", task, str(self.cluster.root), shared=shared)

    def reset(
        self, migrations: Sequence[Migration], *, force: bool = False, end_sessions: bool = False
    ) -> BootReport:
        report = BootReport(self.name)
        state_dir = self._private()
        dbname = self._dbname()
        try:
            self.cluster.check_owned()
            initdb = find_binary("initdb")  # first: a missing binary must leave the old cluster be
            if self.cluster.run_as_other_user:
                statedir.server_ids(required=True)
            with report.phase("remove"):
                statedir.clear_tombstones(state_dir, _stop_buried_server)
                self.cluster.remove()
                _remove_own_pristines(state_dir)
            # a first reset, or a new PostgreSQL, initdb arguments, timezone: initdb (cold) first
            with shared_pristine(initdb, lambda: report.phase("initdb (cold)")) as pristine:
                with report.phase("copy pristine"):
                    state = self.cluster.create(pristine, dbname)
            with report.phase("start"):
                self.cluster.start()
        except OSError as exc:  # the state directory cannot be written or removed
            raise BackendError(
                f"cannot create the local cluster under {state_dir}: {exc}",
                hint="point LEADDB_STATE_DIR at a writable directory on a disk with room",
            ) from None
        with report.phase("createdb"), janitor.maintenance(self.cluster.conninfo("postgres")) as conn:
            state = self.cluster.set_password(conn, state)
            janitor.create_database(conn, state.dbname)
        with report.phase("apply"):
            report.apply = self.apply(migrations)
        return report

    def drop_init_cache(self) -> None:
        """Remove the user's pristine ``initdb`` output: the next reset pays ``initdb`` (the
        bench's cold runs)."""
        _remove_own_pristines(self._private())
        drop_pristines()

    def tidy(self) -> None:
        """What deleted checkouts left (:func:`sweep_vanished`), said in one line."""
        line = sweep_vanished(exclude=self.project_dir)
        if line:
            say(line)

    def start(self) -> None:
        self._private()
        self.cluster.check_owned()
        self.cluster.state()
        if not self.cluster.is_running():
            self.cluster.start()

    def conninfo(self, dbname: str | None = None) -> str:
        return self.cluster.conninfo(dbname)

    def down(self) -> str:
        state_dir = self._private()
        self.cluster.check_owned()
        leftovers = statedir.clear_tombstones(state_dir, _stop_buried_server)
        leftovers += _remove_own_pristines(state_dir)
        swept = (
            f" (and {leftovers} leftover(s) of an interrupted run or an older version)" if leftovers else ""
        )
        if not self.cluster.exists:
            return f"local: no cluster at {self.cluster.root}; nothing to do{swept}"
        self.cluster.remove()
        home = statedir.shared_dir(create=False)
        kept = (
            f"; the pristine initdb output every checkout copies stays in {home} "
            "(`invoke db.down --all` removes it)"
            if home is not None
            else ""
        )
        return f"local: stopped the server and removed {self.cluster.root}{swept}{kept}"

    def describe(self) -> str:
        try:
            state = self.cluster.state()
        except BackendError:
            return f"local cluster at {self.cluster.root} (not created)"
        where = state.socket_dir or "127.0.0.1"
        return (
            f"local cluster {self.cluster.root} (socket {where}, port {state.port}, database {state.dbname})"
        )


# -- what checkouts leave behind -----------------------------------------------------------


def _remove_own_pristines(state_dir: Path) -> int:
    """Pristines an older version kept in each checkout's state directory (now one is shared)."""
    old = list(state_dir.glob(f"{Pristine.PREFIX}*"))
    for entry in old:
        statedir.remove(entry, state_dir)
    return len(old)


def _legacy_layout(path: Path) -> bool:
    """A state directory as this backend made them before they were marked: nothing in it but
    the task lock, the cluster (with its marker), pristines and tombstones."""
    try:
        names = os.listdir(path)
    except OSError:
        return False
    for name in names:
        if name == "reset.lock":
            if not statedir.is_regular_file(path / name):
                return False
        elif name == "cluster":
            if not statedir.is_regular_file(path / name / MARKER):
                return False
        elif not name.startswith((Pristine.PREFIX, statedir.TOMBSTONE_PREFIX)):
            return False
    return True


@dataclass
class Removal:
    """What became of one pointer's state: removed (with ``size`` bytes and ``stopped``
    servers), or ``kept`` (why)."""

    pointer: statedir.Pointer
    gone: bool  # its checkout no longer exists
    size: int = 0
    stopped: int = 0
    kept: str = ""
    retry: bool = False  # kept for now (in use): its pointer stays, a later task tries again
    missing: bool = False  # its directory was gone already (a reboot emptied the RAM disk)

    def line(self) -> str:
        whose = (
            f"of {self.pointer.checkout}"
            if self.pointer.checkout
            else "(the pristine initdb output every checkout copies)"
        )
        if self.gone and self.pointer.checkout:
            whose += " (gone)"
        where = self.pointer.state_dir
        if self.kept:
            return f"local: kept {where} {whose}: {self.kept}"
        if self.missing:
            return f"local: forgot {where} {whose}: it was gone already"
        stopped = f"stopped {self.stopped} server(s), " if self.stopped else ""
        return f"local: {stopped}removed {where} {whose} ({_megabytes(self.size)})"


def _megabytes(size: int) -> str:
    if size >= 100_000:
        return f"{size / 1e6:.1f} MB"
    return f"{round(size / 1e3)} kB" if size >= 1000 else f"{size} bytes"


def _clear(state_dir: Path) -> int:
    """Stop every server of ``state_dir`` (its cluster's, a buried one's) and remove all in it
    but its task lock, which the caller holds; how many servers were stopped."""
    stopped = [Cluster(state_dir / "cluster").remove()]
    statedir.clear_tombstones(state_dir, lambda tomb: stopped.append(_stop_buried_server(tomb)))
    _remove_own_pristines(state_dir)
    return sum(stopped)


def _remove(pointer: statedir.Pointer, *, only_if_gone: bool) -> Removal | None:
    """Remove what ``pointer`` names, if this user's statedir made it for that pointer, with
    every server in it stopped (only a server whose postmaster works in that very data
    directory); then the pointer. Under the pointer's own lock, read again under it: a task
    of a checkout made again at the same path may have re-pointed it meanwhile."""
    with locks.waiting(pointer.lock) if pointer.lock is not None else nullcontext():
        everyone = statedir.pointers(pointer.path.parent)
        current = next((p for p in everyone if p.path == pointer.path), None)
        if current is None:
            return None
        gone = current.checkout is not None and statedir.checkout_gone(current.checkout)
        if only_if_gone and not gone:
            return None
        removal = Removal(current, gone)
        if not os.path.lexists(current.state_dir):  # emptied by a reboot: only the pointer is left
            statedir.forget(current)
            removal.missing = True
            return removal
        if not statedir.made_here(current, everyone, _legacy_layout):
            statedir.forget(current)  # a pointer naming what is not its own: never followed again
            removal.kept = "not a directory leaddb made for it; left alone (its pointer removed)"
            return removal
        removal.size = statedir.tree_size(current.state_dir)
        try:  # refused while a task of that checkout still runs (in a directory since deleted)
            with locks.hold(current.state_dir / "reset.lock", "db.down", str(current.state_dir)):
                removal.stopped = _clear(current.state_dir)
            _remove_marker_last(current.state_dir)
        except (LeadDbError, OSError) as exc:
            removal.kept, removal.retry = str(exc).splitlines()[0], True
            return removal
        statedir.forget(current)
        return removal


def _remove_marker_last(state_dir: Path) -> None:
    """Remove what :func:`_clear` left (the task lock, once released) and then the marker, so
    that until the directory is gone it still says whose it is (a removal stopped half-way is
    finished by a later task)."""
    for entry in os.scandir(state_dir):
        if entry.name != statedir.STATE_MARKER:
            if entry.is_dir(follow_symlinks=False):
                platforms.remove_tree(Path(entry.path))
            else:
                os.unlink(entry.path)
    (state_dir / statedir.STATE_MARKER).unlink(missing_ok=True)
    os.rmdir(state_dir)


def sweep_vanished(*, exclude: Path | None = None) -> str | None:
    """The state of every checkout that is gone (its directory deleted: a CI clone, a temporary
    checkout), its server stopped and its directory removed, with its pointer; one line saying
    so, or None when there was nothing. A glance at the user's pointers (nothing under the
    directories they name is read unless the checkout is gone), so every local task runs it.
    Never fails the task that runs it: what cannot be removed is said and kept."""
    try:
        home = statedir.user_dir()
    except LeadDbError:
        return None  # the task itself says what is wrong with it, if it needs it
    skip = statedir.checkout_key(exclude) if exclude is not None else None
    removals = []
    for pointer in statedir.pointers(home):
        if pointer.checkout is None or not statedir.checkout_gone(pointer.checkout):
            continue
        if skip and pointer.path.name == f"{statedir.POINTER_PREFIX}{skip}.json":
            continue
        try:
            removal = _remove(pointer, only_if_gone=True)
        except (LeadDbError, OSError):
            continue  # the pointer's lock is stuck: the next task tries again
        if removal is not None:
            removals.append(removal)
    if not removals:
        return None
    done = [r for r in removals if not r.kept and not r.missing]
    forgotten = [r for r in removals if r.missing]
    parts = []
    if done:
        names = [str(r.pointer.checkout) for r in done]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        stopped = sum(r.stopped for r in done)
        parts.append(
            f"removed what {len(done)} deleted checkout(s) left ({shown}): "
            f"{stopped} server(s) stopped, {_megabytes(sum(r.size for r in done))} freed"
        )
    if forgotten:
        parts.append(f"forgot {len(forgotten)} deleted checkout(s) whose state was gone already")
    parts += [f"kept {r.pointer.state_dir} of {r.pointer.checkout}: {r.kept}" for r in removals if r.kept]
    return "local: " + "; ".join(parts)


def remove_everything(tell_user: Callable[[str], None] = say) -> None:
    """``db.down --all``: every checkout's state (its server stopped), the shared pristine, and
    the user's pointers and cache entries, each said as it goes (the lock files stay: a few
    bytes each). Raises after removing the rest when something had to be kept (a task of that
    checkout is running)."""
    home = statedir.user_dir()
    said, kept = 0, 0

    staying: set[Path] = set()  # the pointers of what was kept for now

    def tell(removal: Removal | None) -> None:
        nonlocal said, kept
        if removal is not None:
            tell_user(removal.line())
            said += 1
            if removal.retry:
                kept += 1
                staying.add(removal.pointer.path)

    for pointer in statedir.pointers(home):
        if pointer.lock is not None:  # the shared directory's: below, under its own lock
            tell(_remove(pointer, only_if_gone=False))
    with locks.waiting(statedir.shared_lock(), timeout=PRISTINE_WAIT):
        shared = next((p for p in statedir.pointers(home) if p.lock is None), None)
        if shared is not None:
            tell(_remove(shared, only_if_gone=False))
    entries = []
    for entry in [*home.glob("*.json"), *home.glob(".*.tmp")]:  # cache entries, leftovers of writes
        if entry in staying:
            continue
        try:
            entry.unlink()  # a link itself, never what it names; a directory is refused
            entries.append(entry)
        except OSError:
            pass
    if entries:
        tell_user(
            f"local: removed {len(entries)} cache entr{'y' if len(entries) == 1 else 'ies'} from {home}"
        )
    elif not said:
        tell_user(f"local: nothing else of yours to remove ({home} names no state)")
    if kept:
        raise BackendError(
            f"db.down --all kept {kept} state director{'y' if kept == 1 else 'ies'} (said above)",
            hint="wait for the task named above to finish, then run `invoke db.down --all` again",
        )
