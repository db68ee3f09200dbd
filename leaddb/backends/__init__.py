"""Backends behind one interface: ``docker``, ``local`` and ``dsn``; ``auto`` picks."""

from __future__ import annotations

from pathlib import Path

from leaddb.backends.base import Backend, BootReport, Capabilities, FloorBoot, Phase
from leaddb.errors import BackendError

NAMES = ("auto", "docker", "local", "dsn")


def select(name: str, project_dir: Path, *, dsn: str = "", say=print) -> Backend:
    """The backend to use; ``auto`` prefers Docker and says which it picked."""
    if name not in NAMES:
        raise BackendError(f"unknown backend {name!r}", hint=f"choose one of {', '.join(NAMES)}")
    if name == "auto" and dsn:
        name = "dsn"
    if name == "auto":
        from leaddb.backends.docker import engine

        answers, where = engine.answers()
        if answers:
            say(f"backend: docker (auto: engine at {where})")
            name = "docker"
        else:
            say(f"backend: local (auto: {where}; using an embedded PostgreSQL 15 cluster)")
            name = "local"
    else:
        say(f"backend: {name}")
    if name == "local":
        from leaddb.backends.local import LocalBackend

        return LocalBackend(project_dir)
    if name == "dsn":
        from leaddb.backends.dsn import DsnBackend

        return DsnBackend(project_dir, dsn)
    from leaddb.backends.docker import DockerBackend

    return DockerBackend(project_dir)


def remove_user_state() -> None:
    """``db.down --all``: everything of this user's the backends keep on this machine beyond
    one workspace (every checkout's local cluster and state, the shared pristine, the per-user
    cache entries), each said as it goes."""
    from leaddb.backends.local import remove_everything

    remove_everything()


__all__ = [
    "Backend",
    "BootReport",
    "Capabilities",
    "FloorBoot",
    "Phase",
    "select",
    "remove_user_state",
    "NAMES",
]
