"""An embedded PostgreSQL 15 cluster made with ``initdb`` and ``pg_ctl``.

The server's lifecycle (copy, start, wait, stop, log) lives in ``Cluster``
(``leaddb/backends/cluster.py``, the executor), the cached ``initdb`` output in ``Pristine``
(``leaddb/backends/pristine.py``); this backend adds the database and the migrations. A
checkout's cluster sits in its private state directory (``leaddb.statedir``: the invoking
user's, checked on every use), in a directory carrying a marker file, so ``down`` and ``reset``
never remove a directory this workspace did not create, beside the task lock. Every reset
copies the user's one pristine ``initdb`` output (in the directory all checkouts share) instead
of running ``initdb`` again. Run as root, the server runs as the ``postgres`` user (``initdb``
and ``postgres`` refuse root).

Nothing outlives its checkout: every local task first removes what deleted checkouts left
(:func:`sweep_vanished`: their servers stopped, their state directories and pointers removed),
and ``db.down --all`` removes everything of the user's (:func:`remove_everything`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from leaddb import compose, janitor, locks, nofollow, permissions, platforms, statedir, tombstones
from leaddb.backends.base import Backend, BootReport, Capabilities
from leaddb.backends.cluster import (  # noqa: F401 - free_port, run_program, _alive: the tests' too
    MARKER,
    SERVER_USER,
    Cluster,
    _alive,
    _stop_buried_server,
    find_binary,
    free_port,
    run_program,
)
from leaddb.backends.pristine import PRISTINE_WAIT, Pristine, drop_pristines, shared_pristine
from leaddb.console import say
from leaddb.errors import BackendError, LeadDbError
from leaddb.migrations import Migration
from leaddb.statedir import scratch_root  # noqa: F401 - where the tests put their state dirs

DEFAULT_DBNAME = "leadgen"


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
                permissions.server_ids(required=True)
            with report.phase("remove"):
                tombstones.clear_tombstones(state_dir, _stop_buried_server)
                _, old = self.cluster.bury()  # its server stopped; the tree removed below
                _remove_own_pristines(state_dir)
            # a first reset, or a new PostgreSQL, initdb arguments, timezone: initdb (cold) first
            with shared_pristine(initdb, lambda: report.phase("initdb (cold)")) as pristine:
                with report.phase("copy pristine"):
                    try:
                        state = self.cluster.create(pristine, dbname)
                    except OSError:
                        if old is None:
                            raise
                        platforms.remove_tree(old)  # the room it held (a full disk): once more
                        old = None
                        state = self.cluster.create(pristine, dbname)
            with report.phase("start"):  # the old tree is removed while the new server starts up
                self.cluster.start(meanwhile=lambda: _remove_buried(old))
        except OSError as exc:  # the state directory cannot be written or removed
            raise BackendError(
                f"cannot create the local cluster under {state_dir}: {exc}",
                hint="point LEADDB_STATE_DIR at a writable directory on a disk with room",
            ) from None
        with report.phase("createdb"), janitor.maintenance(self.cluster.conninfo("postgres")) as conn:
            state = self.cluster.set_password(conn, state)
            # a new cluster of our own, fsync off: two checkpoints cost less than logging template1
            # (STRATEGY is PostgreSQL 15's; an older initdb on PATH gets the default)
            strategy = "FILE_COPY" if conn.info.server_version >= 150000 else None
            janitor.create_database(conn, state.dbname, strategy=strategy)
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
        leftovers = tombstones.clear_tombstones(state_dir, _stop_buried_server)
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


def _remove_buried(old: Path | None) -> None:
    """The old cluster's tree, removed while the new server starts up. It is a tombstone
    already: a failure to remove it leaves it to the next reset or ``db.down`` (and never stops
    or fails the new cluster, which is running by then)."""
    if old is None:
        return
    try:
        platforms.remove_tree(old)
    except OSError as exc:
        say(f"local: the old cluster's files in {old} are left for the next reset or db.down ({exc})")


def _remove_own_pristines(state_dir: Path) -> int:
    """Pristines an older version kept in each checkout's state directory (now one is shared)."""
    old = list(state_dir.glob(f"{Pristine.PREFIX}*"))
    for entry in old:
        tombstones.remove(entry, state_dir)
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
            if not nofollow.is_regular_file(path / name):
                return False
        elif name == "cluster":
            if not nofollow.is_regular_file(path / name / MARKER):
                return False
        elif not name.startswith((Pristine.PREFIX, tombstones.TOMBSTONE_PREFIX)):
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
    tombstones.clear_tombstones(state_dir, lambda tomb: stopped.append(_stop_buried_server(tomb)))
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
