"""Backends behind one interface: ``docker``, ``local`` and ``dsn``; ``auto`` picks."""

from __future__ import annotations

from pathlib import Path

from leaddb.backends.base import Backend, BootReport, Phase
from leaddb.errors import BackendError

NAMES = ("auto", "docker", "local", "dsn")


def docker_engine_answers() -> tuple[bool, str]:
    """Whether a Docker engine answers, and where we looked (for the user)."""
    try:
        import docker
    except ImportError:
        return False, "the docker Python package is not installed"
    try:
        client = docker.from_env(timeout=3)
        client.ping()
        return True, client.api.base_url
    except Exception as exc:  # noqa: BLE001 - any failure to reach the engine means "no engine"
        return False, f"no Docker engine answered ({type(exc).__name__})"


def select(name: str, project_dir: Path, *, dsn: str = "", say=print) -> Backend:
    """The backend to use; ``auto`` prefers Docker and says which it picked."""
    if name not in NAMES:
        raise BackendError(f"unknown backend {name!r}", hint=f"choose one of {', '.join(NAMES)}")
    if name == "auto" and dsn:
        name = "dsn"
    if name == "auto":
        answers, where = docker_engine_answers()
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


__all__ = ["Backend", "BootReport", "Phase", "select", "NAMES"]
