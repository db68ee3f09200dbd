"""The one small interface every backend implements.

Only ``leaddb/backends/`` knows how backends differ. Callers ask a backend what it can
do (``capabilities``), start it explicitly (``start``), read its connection strings
(``conninfo``, a plain getter) and apply through it (``apply``); they never test its
name or its attributes.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from leaddb.errors import BackendError
from leaddb.migrations import Migration

if TYPE_CHECKING:
    # runner imports psycopg (~0.15 s): a Docker reset needs it only once its container boots
    from leaddb import runner


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float


@dataclass
class BootReport:
    """What a reset did, phase by phase (wall-clock seconds)."""

    backend: str
    phases: list[Phase] = field(default_factory=list)
    apply: runner.ApplyResult | None = None

    @property
    def total(self) -> float:
        return sum(p.seconds for p in self.phases)

    def seconds(self, name: str) -> float:
        return sum(p.seconds for p in self.phases if p.name == name)

    @contextmanager
    def phase(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases.append(Phase(name, time.perf_counter() - started))


@dataclass(frozen=True)
class FloorBoot:
    """The same fresh boot done with the plain tools and no help from this project (the
    bench's floor): what the tool's own overhead is measured against."""

    label: str
    """What was run, for people (e.g. "bare docker run (same image, mount, volume)")."""
    boot: float
    """Seconds from creating the server until it answers on its port."""
    remove: float
    """Seconds to remove what the boot created: what a reset pays first for the previous one."""
    subject: str = "server"
    """What booted, in the user's words (e.g. the image, "postgres:15")."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, for callers that must choose without knowing which it is."""

    owns_server: bool
    """The server is this workspace's own: a reset may recreate it, and template databases
    (``db.reset --fast``, the bench's fast resets) may be kept on it."""

    cached_init: bool = False
    """A reset reuses something a first reset builds (local: the pristine ``initdb`` output);
    ``drop_init_cache`` forgets it, so that the bench can time a first reset too."""

    fresh_boot_goal: float | None = None
    """The team's goal for a fresh boot + apply (p95, seconds) on the 2-core CI machine, when a
    boot is this backend's to time (reported by the bench, never exit-coded); None otherwise."""

    floor_boot: bool = False
    """It can time the same fresh boot done by hand without this tool (``floor_boot``), with the
    migrations and without them, so the bench can report the tool's own overhead as a share of a
    reset and split a missed target into the bare boot, the migrations and the tool."""


class Backend(ABC):
    """A PostgreSQL 15 server the pipeline can reset, apply to and inspect.

    ``reset`` gives a fresh server (or database) with every migration applied; ``start``
    makes an existing one answer; ``apply`` runs files against a database on it;
    ``conninfo`` is what psycopg needs; ``down`` removes what this workspace created.
    """

    name: str
    capabilities: Capabilities
    built: str
    """What a reset builds, in the user's words (what Ctrl-C may leave half-created)."""
    database_setting = "POSTGRES_DB (docker-compose.yml or .env)"
    """Where the name of the project's database comes from, for messages about it."""

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir

    @classmethod
    def create(cls, project_dir: Path, *, dsn: str = "") -> Backend:
        """The backend for ``project_dir`` (``leaddb.backends.select``); ``dsn`` is the user's
        connection string, for the backends that take one."""
        return cls(project_dir)

    @abstractmethod
    def reset(
        self, migrations: Sequence[Migration], *, force: bool = False, end_sessions: bool = False
    ) -> BootReport:
        """A fresh server or database with every migration applied (the caller holds ``lock``).
        ``end_sessions``: other clients' sessions on a database being replaced may be ended
        (on a server that is not ours; without it a reset refuses while there are any)."""

    @abstractmethod
    def start(self) -> None:
        """Make the existing server answer (start it if it is this workspace's and stopped);
        raises BackendError with the next step when it cannot."""

    @abstractmethod
    def conninfo(self, dbname: str | None = None) -> str:
        """A libpq connection string to ``dbname`` (default: the project's database). A plain
        getter: it starts nothing and connects nowhere; call ``start`` first."""

    @abstractmethod
    def down(self) -> str:
        """Remove what this workspace created; returns what was done, for the user."""

    @abstractmethod
    def describe(self) -> str:
        """Where the database is, with any secret masked."""

    def lock(self, task: str, *, shared: bool = False) -> AbstractContextManager:
        """Held by every task that changes the server or its databases, so that a second one
        is refused ("another … is running") instead of racing the first. ``shared`` holders
        (applies, which the server-side advisory lock already serialises) exclude only
        exclusive ones (reset, down, bench). Re-entrant within one process."""
        return nullcontext()

    def apply(
        self,
        migrations: Sequence[Migration],
        *,
        dbname: str | None = None,
        reapply: bool = False,
        on_file=None,
    ) -> runner.ApplyResult:
        """Apply the files in order to ``dbname`` (default: the project's database, never one of
        the server's own nor a name the server would cut: ``names.problem``)."""
        from leaddb import names, runner  # psycopg, lazily: a Docker reset starts its container first

        conninfo = self.conninfo(dbname)
        if dbname is None:
            names.check_target(
                names.dbname_of(conninfo), action="apply the migrations to", source=self.database_setting
            )
        return runner.apply(
            conninfo, migrations, reapply=reapply, project_dir=self.project_dir, on_file=on_file
        )

    def tidy(self) -> None:
        """Clear what workspaces that no longer exist left on this machine (local: the servers
        and state of deleted checkouts), saying so. Cheap: every task runs it first. Nothing by
        default."""
        return None

    def drop_init_cache(self) -> None:
        """Forget what ``capabilities.cached_init`` says a reset reuses (nothing by default)."""
        return None

    def floor_boot(self, *, migrations: bool = True) -> FloorBoot:
        """Time the same fresh boot done by hand (only where ``capabilities.floor_boot``), with the
        migrations or (``migrations=False``) the bare server alone; leaves nothing behind."""
        raise BackendError(f"the {self.name} backend has no floor boot to compare with")

    def server_info(self) -> dict:
        """What the bench records about the server (and the engine, where there is one); a
        ``storage`` entry, where there is one, says in words what the data sits on and is
        printed with the bench's table."""
        from leaddb import runner

        try:
            with runner.connect(self.conninfo("postgres")) as conn:
                return {"postgresql": conn.execute("SELECT version()").fetchone()[0]}
        except Exception as exc:  # noqa: BLE001 - informational only
            return {"postgresql": None, "error": f"{type(exc).__name__}: {exc}"}
