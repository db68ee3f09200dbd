"""The one small interface every backend implements."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from leaddb import runner
from leaddb.migrations import Migration


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


class Backend(ABC):
    """A PostgreSQL 15 server the pipeline can reset, apply to and inspect.

    ``reset`` gives a fresh server (or database) with every migration applied;
    ``apply`` runs the files against what is there; ``conninfo`` is what psycopg
    needs for introspection; ``down`` removes what this workspace created.
    """

    name: str

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir

    @abstractmethod
    def reset(self, migrations: Sequence[Migration], *, force: bool = False) -> BootReport: ...

    def reset_lock(self) -> AbstractContextManager:
        """Held by every reset of this backend's server or database (``--fast`` too), so a
        second reset is refused instead of racing the first."""
        return nullcontext()

    @abstractmethod
    def conninfo(self, dbname: str | None = None) -> str:
        """A libpq connection string for the running server; raises BackendError when down."""

    @abstractmethod
    def down(self) -> str:
        """Remove what this workspace created; returns what was done, for the user."""

    @abstractmethod
    def describe(self) -> str:
        """Where the database is, with any secret masked."""

    def apply(
        self, migrations: Sequence[Migration], *, reapply: bool = False, on_file=None
    ) -> runner.ApplyResult:
        return runner.apply(
            self.conninfo(), migrations, reapply=reapply, project_dir=self.project_dir, on_file=on_file
        )
