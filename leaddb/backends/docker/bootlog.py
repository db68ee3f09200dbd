"""The container's boot log: reading it, following it, and what it says happened.

The engine copies stdout (the entrypoint's messages) and stderr (the server's and psql's)
separately and does not keep them in order, so nothing here depends on the order of the
two streams. Phases are timed from the engine's own log timestamps, so they measure the
container, not this process's polling.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from leaddb.backends.base import Phase
from leaddb.backends.docker.psql import PSQL_FOLLOWUP, PSQL_MESSAGE, PSQL_UNNAMED
from leaddb.errors import BackendError

BOOT_TIMEOUT_ENV = "LEADDB_DOCKER_BOOT_TIMEOUT"

# What the entrypoint (official image and ours) and the server print, in boot order. An init
# file is "running" (.sql, or a .sh the entrypoint executes: Docker Desktop shows files
# bind-mounted from Windows as mode 0777, so every .sh is executable there) or "sourcing"
# (a .sh that is not executable).
INITDB_DONE = ("Success. You can now start the database server", "waiting for server to start")
INIT_FILE = re.compile(r": (?:running|sourcing) (/docker-entrypoint-initdb\.d/\S+)")
INIT_COMPLETE = "PostgreSQL init process complete; ready for start up."
SKIPPING_INIT = "Skipping initialization"
STOPPING = "waiting for server to shut down"
READY = "database system is ready to accept connections"


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
    file of ours, its last error: psql reading a ``.sql.gz`` from stdin, or run by a ``.sh`` file
    with ``-c`` or a heredoc, prints its error with no ``psql:FILE:LINE:`` prefix at all (the
    server's own log lines start with a timestamp, so a bare ``ERROR:`` line is psql's)."""
    failing = None
    groups: list[tuple[str, list[str]]] = []  # (file psql names, its error and follow-up lines)
    capturing = False
    for line in lines:
        text = line.text.rstrip()
        found = INIT_FILE.search(text)
        if found:
            failing, capturing = found.group(1), False
            continue
        message = PSQL_MESSAGE.match(text) or PSQL_UNNAMED.match(text)
        if message and message["level"] in ("ERROR", "FATAL"):
            groups.append((message.groupdict().get("file") or "<stdin>", [text]))
            capturing = True
        elif capturing and (PSQL_FOLLOWUP.match(text) or text.startswith(" ")):
            groups[-1][1].append(text)
        else:
            capturing = False
    about = [text for file, group in groups if file == failing for text in group]
    if not about and groups:  # psql names "<stdin>" for .sql.gz and .sh files: the last error
        about = groups[-1][1]
    return failing, about


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


# The container's signals are Linux's whatever the host is (Docker Desktop runs a Linux VM): named
# from this table, never from the host's signal module (Windows' has no SIGKILL).
LINUX_SIGNALS = {
    number: f"SIG{name}"
    for number, name in enumerate(
        "HUP INT QUIT ILL TRAP ABRT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM STKFLT CHLD CONT STOP "
        "TSTP TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO PWR SYS".split(),
        start=1,
    )
}


def killed_by(state: dict) -> str | None:
    """Why the engine or the kernel ended the container, from its ``State``: an OOM kill, or
    a signal (exit code 128 + N: ``docker kill``, Docker Desktop restarting); None when it
    exited on its own (the entrypoint's own exit code, e.g. psql's 3)."""
    if state.get("OOMKilled"):
        return "out of memory: the kernel's OOM killer"
    code = state.get("ExitCode")
    if isinstance(code, int) and 128 < code < 128 + 65:
        name = LINUX_SIGNALS.get(code - 128, f"signal {code - 128}")
        return f"{name}, exit code {code}"
    return None


def tail(lines: Sequence[LogLine], count: int = 25) -> str:
    return "\n".join("    " + line.text for line in lines[-count:])


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
                    f"last log lines:\n{tail(self.lines)}",
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
