"""Waits on the server, made visible and bounded.

While a statement of a migration runs - in-process (``leaddb.runner``, statement by statement or
pipelined) or through psql in the Docker container (``leaddb.backends.docker.psql``) - a
``Watcher`` thread keeps an eye on it. Once a statement has run ``Limits.report_after`` seconds
it is looked up on the server from a session of the watcher's own (``pg_stat_activity``,
``pg_locks``, ``pg_blocking_pids``), and one line says what it waits on::

    waiting: api/db/migrations/0006_leads.sql:71 waits for ShareLock on relation leads, held by
    pid 4242 (role app, application 'psql'; idle in transaction since 12:03:04 UTC, 41 s; last
    query: LOCK TABLE leads IN ACCESS EXCLUSIVE MODE); waited 8 s, limit 120 s (--lock-timeout)

or, for a statement that is slow but waits on nobody (``SELECT pg_sleep(600)``, an index built
over a big table)::

    still running: api/db/migrations/0008_x.sql:4 for 30 s, not waiting for another session
    (server: active, wait event Timeout:PgSleep); no limit (--statement-timeout)

A blocked statement is one whose ``pg_blocking_pids`` is not empty; any other is running. The
line comes again when what the statement waits on changes, else after 10 s, 30 s, then every
60 s: never more often than the situation changes, never silent for more than a minute.

Two limits (``Limits``): ``lock`` bounds each wait for a lock another session holds (from
``pg_locks.waitstart``, as PostgreSQL's ``lock_timeout`` counts), ``statement`` how long any one
statement runs, blocked or not. Past one, the watcher cancels the statement - only that one: the
cancel names its pid and its ``query_start`` - and the applier fails with the same line, the file
and the line, once the file's transaction is rolled back (``Verdict``). The server holds the
session to the same limits a little later (``server_options``: its ``lock_timeout`` and
``statement_timeout``), so a wait stays bounded where the watcher cannot look (no connection
slot left) and where the client is killed outright: an orphaned session waiting for a lock gives
up, and its locks - the apply lock among them - go with it.

The limits come from the task's flags (``leaddb.cli.wait_limits``) through :func:`configure`;
:func:`limits` sets them for one block (tests). psycopg is imported by the watcher's thread, not
with this module.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from leaddb.errors import WaitTimeout

DEFAULT_LOCK_TIMEOUT = 120.0  # seconds: another session's lock
DEFAULT_STATEMENT_TIMEOUT = 0.0  # none: a big table's index may take long; it is reported, not cut
REPORT_AFTER = 2.0
REFRESH = (10.0, 30.0, 60.0)  # seconds between lines that say the same; the last one repeats
POLL = 0.5  # seconds between looks, once a statement is looked at
QUERY_CHARS = 120  # of a session's query in a line
SERVER_MARGIN = (5.0, 0.25)  # the server's own limit: ours plus the larger of 5 s and a quarter


@dataclass(frozen=True)
class Limits:
    """Seconds; 0 means no limit. ``*_source`` says how the user changes it, for messages."""

    lock: float = DEFAULT_LOCK_TIMEOUT
    statement: float = DEFAULT_STATEMENT_TIMEOUT
    report_after: float = REPORT_AFTER
    lock_source: str = "--lock-timeout"
    statement_source: str = "--statement-timeout"

    def first_look(self) -> float:
        """When a running statement is first looked at: soon enough to report it, and to see a
        limit passed."""
        return min(x for x in (self.report_after, self.lock, self.statement) if x > 0)

    def server_options(self) -> str:
        """libpq ``options`` (or ``PGOPTIONS``) that make the server enforce the limits too, a
        margin later: session defaults, so a file's own SET and RESET ALL behave as in psql."""
        settings = []
        for name, value in (("lock_timeout", self.lock), ("statement_timeout", self.statement)):
            if value > 0:
                backstop = value + max(SERVER_MARGIN[0], value * SERVER_MARGIN[1])
                settings.append(f"-c {name}={max(1, round(backstop * 1000))}")
        return " ".join(settings)


_configured = Limits()
_scoped: ContextVar[Limits | None] = ContextVar("leaddb_wait_limits", default=None)


def configure(value: Limits) -> None:
    """The limits of this process's task (the CLI sets them from the task's flags)."""
    global _configured
    _configured = value


def current() -> Limits:
    return _scoped.get() or _configured


@contextmanager
def limits(value: Limits) -> Iterator[Limits]:
    token = _scoped.set(value)
    try:
        yield value
    finally:
        _scoped.reset(token)


# -- what the server says ------------------------------------------------------------------------


def one_line(text: str | None, limit: int = QUERY_CHARS) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _clock(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC") if moment else "?"


@dataclass(frozen=True)
class Holder:
    """A session that holds what the statement waits for."""

    pid: int
    user: str | None = None
    application: str | None = None
    state: str | None = None
    since: datetime | None = None  # its transaction's start, else its state's, else its start
    query: str | None = None

    def describe(self, now: datetime) -> str:
        parts = []
        if self.user:
            parts.append(f"role {self.user}")
        if self.application:
            parts.append(f"application {self.application!r}")
        who = f" ({', '.join(parts)}" if parts else " ("
        state = self.state or "state not visible to this role"
        since = (
            f" since {_clock(self.since)}, {duration((now - self.since).total_seconds())}"
            if self.since
            else ""
        )
        query = f"; last query: {one_line(self.query)}" if self.query else ""
        return f"pid {self.pid}{who}{'; ' if parts else ''}{state}{since}{query})"


@dataclass(frozen=True)
class Seen:
    """One look at the watched session."""

    pid: int
    state: str | None
    wait_event: str | None
    running: float  # seconds the statement has run (the server's clock)
    query_start: datetime | None
    query: str
    now: datetime
    lock: str | None = None  # what it waits for, when blocked
    waited: float = 0.0  # seconds it has waited for that lock
    holders: tuple[Holder, ...] = ()

    @property
    def blocked(self) -> bool:
        return bool(self.holders)

    def key(self) -> tuple:
        return (self.blocked, self.lock, tuple(h.pid for h in self.holders))


def describe(what: str, seen: Seen, limits: Limits, *, gave_up: str | None = None) -> str:
    """The one line for a look: ``waiting: …`` / ``still running: …``; with ``gave_up`` (the
    limit passed), the same said as the failure."""
    if seen.blocked:
        first, others = seen.holders[0], len(seen.holders) - 1
        more = f" and {others} other session(s)" if others else ""
        held = f"{seen.lock or 'a lock'}, held by {first.describe(seen.now)}{more}"
        limit = _limit(limits.lock, limits.lock_source)
        if gave_up:
            return f"{what}: gave up after waiting {duration(seen.waited)} ({limit}) for {held}; {gave_up}"
        return f"waiting: {what} waits for {held}; waited {duration(seen.waited)}, {limit}"
    server = f"server: {seen.state or '?'}" + (f", wait event {seen.wait_event}" if seen.wait_event else "")
    limit = _limit(limits.statement, limits.statement_source)
    if gave_up:
        return (
            f"{what}: ran {duration(seen.running)} ({limit}), not waiting for another session "
            f"({server}); {gave_up}"
        )
    return (
        f"still running: {what} for {duration(seen.running)}, not waiting for another session "
        f"({server}); {limit}"
    )


def _limit(seconds: float, source: str) -> str:
    return f"limit {duration(seconds)} ({source})" if seconds > 0 else f"no limit ({source})"


@dataclass(frozen=True)
class Verdict:
    """A limit the watched statement passed; the watcher cancelled it."""

    kind: str  # "lock" or "statement"
    what: str
    seen: Seen
    limits: Limits

    def error(self, where: str | None, state: str, statement: str | None = None) -> WaitTimeout:
        """The failure: ``where`` (file:line) when the applier knows it better than the look did,
        ``state`` what was rolled back and what stays, ``statement`` its text."""
        what = where or self.what
        line = describe(what, self.seen, self.limits, gave_up="the statement was cancelled")
        body = "".join(f"\n    {text}" for text in (statement or "").splitlines())
        source = self.limits.lock_source if self.kind == "lock" else self.limits.statement_source
        if self.kind == "lock":
            holder = self.seen.holders[0].pid if self.seen.holders else None
            act = (
                f"end that session or let it finish (SELECT pg_terminate_backend({holder}) ends it)"
                if holder
                else "end the session that holds it"
            )
        else:
            act = "make the statement faster"
        return WaitTimeout(
            line + (f"\n  statement:{body}" if body else ""),
            hint=f"{act}, or raise the limit ({_how(source)}; 0: no limit), then run the task again; {state}",
        )


def _how(source: str) -> str:
    return source if source.startswith("-") else f"set {source}"


# -- the watcher -----------------------------------------------------------------------------------

_ACTIVITY = """
SELECT a.pid, a.state, a.wait_event_type || ':' || a.wait_event, a.query_start, now(),
       a.query, pg_blocking_pids(a.pid)
FROM pg_stat_activity a WHERE {where}
ORDER BY a.backend_start LIMIT 1
"""
_WAITING_FOR = """
SELECT locktype, mode, relation::regclass::text, classid::bigint, objid::bigint, objsubid,
       transactionid::text, now() - waitstart
FROM pg_locks WHERE pid = %s AND NOT granted LIMIT 1
"""
_HOLDERS = """
SELECT pid, usename, application_name, state, coalesce(xact_start, state_change, backend_start),
       query
FROM pg_stat_activity WHERE pid = ANY(%s) ORDER BY array_position(%s, pid)
"""
_CANCEL = (
    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
    "WHERE pid = %s AND query_start = %s AND state = 'active'"
)


def describe_lock(row: tuple, named: Mapping[int, str]) -> str:
    """What a waiting row of ``pg_locks`` waits for, in words."""
    locktype, mode, relation, classid, objid, objsubid, xid = row[:7]
    if locktype == "advisory" and objsubid == 1 and classid is not None and objid is not None:
        key = (classid << 32) | objid
        if key >= 1 << 63:
            key -= 1 << 64
        return named.get(key, f"advisory lock {key}")
    if locktype == "relation" and relation:
        return f"{mode} on relation {relation}"
    if locktype == "transactionid":
        return f"{mode} on transaction {xid} (a row, or an object, it changed and has not committed)"
    return f"{mode} on a {locktype} object"


class Watcher:
    """Watches one session's statements from a thread: ``running(what)`` before each statement,
    ``idle()`` between; reports long ones and cancels one past a limit (``fired``). The session
    is ``pid`` (the runner's own), or the one whose ``application_name`` is ``application``
    (psql in the container), then ``locate(query)`` names where its statement is."""

    def __init__(
        self,
        conninfo: str,
        *,
        pid: int | None = None,
        application: str | None = None,
        limits: Limits | None = None,
        named_locks: Mapping[int, str] | None = None,
        locate: Callable[[str], str | None] | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.pid = pid
        self.application = application
        self.limits = limits or current()
        self.named_locks = dict(named_locks or {})
        self.locate = locate
        if say is None:
            from leaddb.console import say
        self.say = say
        self.fired: Verdict | None = None
        self.last: Seen | None = None
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._what: str | None = None
        self._started = 0.0
        self._generation = 0
        self._printed: tuple | None = None
        self._printed_at = 0.0
        self._repeats = 0
        self._conn = None
        self._unavailable = False
        self._thread: threading.Thread | None = None

    # -- the applier's side
    def __enter__(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, name="leaddb-watcher", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def running(self, what: str | None) -> None:
        """``what`` (e.g. "api/db/migrations/0006_leads.sql:71") starts on the server now;
        None: the look names it (``locate``)."""
        with self._guard:
            self._what, self._started = what or "", time.monotonic()
            self._generation += 1
            self._printed, self._repeats = None, 0

    def idle(self) -> None:
        with self._guard:
            self._what = None
            self._generation += 1

    def verdict(self, exc: BaseException | None = None) -> Verdict | None:
        """Whether the watcher cancelled the statement that just failed."""
        return self.fired

    # -- the thread
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._guard:
                    what, started, generation = self._what, self._started, self._generation
                if what is None or self.fired is not None or self._unavailable:
                    self._stop.wait(0.25)
                    continue
                elapsed, first = time.monotonic() - started, self.limits.first_look()
                if elapsed < first:
                    self._stop.wait(min(0.25, first - elapsed))
                    continue
                seen = self._look()
                if seen is not None:
                    self._judge(what, generation, seen)
                self._stop.wait(POLL)
        finally:
            if self._conn is not None:
                try:
                    self._conn.close()
                except Exception:  # noqa: BLE001 - closing a watcher's session can only fail quietly
                    pass

    def _connect(self):
        import psycopg

        from leaddb import masking

        try:
            self._conn = psycopg.connect(
                self.conninfo, autocommit=True, connect_timeout=10, application_name="leaddb watcher"
            )
            self._conn.execute("SET statement_timeout = '10s'")
        except psycopg.Error as exc:
            self._unavailable = True
            reason = masking.scrub(" ".join(str(exc).split()), self.conninfo)
            self.say(
                f"note: cannot look at a slow statement from another session ({reason}); the server "
                "still holds it to the limits"
            )
        return self._conn

    def _look(self) -> Seen | None:
        import psycopg

        if self._conn is None and self._connect() is None:
            return None
        try:
            return self._query()
        except psycopg.Error as exc:
            if self._conn.broken:
                self._conn = None
            self.say(f"note: looking at a slow statement failed: {' '.join(str(exc).split())}")
            self._unavailable = True
            return None

    def _query(self) -> Seen | None:
        conn = self._conn
        if self.pid is not None:
            row = conn.execute(_ACTIVITY.format(where="a.pid = %s"), (self.pid,)).fetchone()
        else:
            row = conn.execute(
                _ACTIVITY.format(where="a.application_name = %s"), (self.application,)
            ).fetchone()
        if row is None:
            return None
        pid, state, event, query_start, now, query, blocking = row
        running = (now - query_start).total_seconds() if query_start else 0.0
        seen = Seen(pid, state, event, running, query_start, query or "", now)
        if not blocking:
            return seen
        lock = conn.execute(_WAITING_FOR, (pid,)).fetchone()
        holders = tuple(
            Holder(p, user, application or None, s, since, q)
            for p, user, application, s, since, q in conn.execute(_HOLDERS, (blocking, blocking))
        ) or tuple(Holder(p) for p in blocking)
        waited = lock[7].total_seconds() if lock and lock[7] is not None else running
        return replace(
            seen,
            lock=describe_lock(lock, self.named_locks) if lock else None,
            waited=waited,
            holders=holders,
        )

    def _judge(self, what: str, generation: int, seen: Seen) -> None:
        if seen.state != "active":
            return  # between two statements
        with self._guard:
            if generation != self._generation:
                return  # the statement looked at has ended meanwhile
        self.last = seen
        name = what or (self.locate(seen.query) if self.locate else None) or f"`{one_line(seen.query, 60)}`"
        limits = self.limits
        kind = None
        if seen.blocked and limits.lock > 0 and seen.waited >= limits.lock:
            kind = "lock"
        elif limits.statement > 0 and seen.running >= limits.statement:
            kind = "statement"
        if kind is not None:
            self.fired = Verdict(kind, name, seen, limits)
            if not self._cancel(seen):
                self.fired = None  # it ended on its own between the look and the cancel
            return
        if seen.running < limits.report_after:
            return
        now = time.monotonic()
        due = REFRESH[min(self._repeats, len(REFRESH) - 1)]
        if seen.key() != self._printed or now - self._printed_at >= due:
            self._repeats = self._repeats + 1 if seen.key() == self._printed else 0
            self._printed, self._printed_at = seen.key(), now
            self.say(describe(name, seen, limits))

    def _cancel(self, seen: Seen) -> bool:
        import psycopg

        try:
            row = self._conn.execute(_CANCEL, (seen.pid, seen.query_start)).fetchone()
        except psycopg.Error:
            return False
        return bool(row and row[0])


_SPACE = re.compile(r"\s+")


def locator(statements: list[tuple[str, str]]) -> Callable[[str], str | None]:
    """For the psql path: a query text as the server shows it -> where it is ("file:line"), from
    (where, sql) pairs; white space does not count, and the server's text may hold comments."""
    index = [(where, _SPACE.sub(" ", sql).strip()) for where, sql in statements]

    def locate(query: str) -> str | None:
        flat = _SPACE.sub(" ", query).strip().rstrip(";").strip()
        for where, sql in index:
            if sql and (sql == flat or sql in flat):
                return where
        return None

    return locate


# -- sessions --------------------------------------------------------------------------------------

# what the sessions of this process's catalog reads are called on the server (pg_stat_activity)
READER = f"leaddb read (client pid {os.getpid()})"


# the sessions called %(name)s (only %(pid)s, when it is not null); each is then ended on its own:
# a function in a WHERE clause may be called before the other conditions are
_MINE = (
    "SELECT pid FROM pg_stat_activity WHERE application_name = %(name)s "
    "AND (%(pid)s::int IS NULL OR pid = %(pid)s::int)"
)


def terminate(conninfo: str, application: str, *, pid: int | None = None) -> tuple[list[int], int]:
    """End the sessions called ``application`` (only ``pid``, if given) and wait for them, a
    bounded while (``pg_terminate_backend``'s timeout): the pids ended, and how many are left."""
    import psycopg

    params = {"name": application, "pid": pid}
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5, application_name="leaddb") as check:
        check.execute("SET statement_timeout = '15s'")
        ended = [row[0] for row in check.execute(_MINE, params).fetchall()]
        for found in ended:
            check.execute("SELECT pg_terminate_backend(%s, 5000)", (found,))
        left = len(check.execute(_MINE, params).fetchall())
    return ended, left


@contextmanager
def watched(conninfo: str, what: str, *, state: str = "nothing was changed", connect=None):
    """A session for reading (the catalog, the diagram's model), watched and bounded as the
    runner's are: a read that waits for a table another session has locked (``pg_get_expr``
    locks the table it reads a default of) is reported and given up past the limits; ``what``
    names it in the lines, ``state`` says what was left. Interrupted, its session is ended.
    ``connect`` makes the session (default: the runner's, with its pinned settings)."""
    import psycopg

    if connect is None:
        from leaddb.runner import connect
    limits = current()
    conn = connect(conninfo, application_name=READER, options=limits.server_options())
    pid = conn.info.backend_pid
    try:
        with Watcher(conninfo, pid=pid, limits=limits) as watcher:
            watcher.running(what)
            try:
                yield conn
            except psycopg.Error:
                if watcher.fired is not None:
                    raise watcher.fired.error(None, state) from None
                raise
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: its server session goes too
        conn.close()
        try:
            _, left = terminate(conninfo, READER, pid=pid)
            if not left:
                exc.add_note(f"{what}: its session on the server (pid {pid}) was ended")
        except psycopg.Error:
            pass  # a read holds nothing; the task's message says the rest
        raise
    finally:
        conn.close()
