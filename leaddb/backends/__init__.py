"""Backends behind one interface: ``docker``, ``local`` and ``dsn``; ``auto`` picks.

Adding a backend is its module (or package) plus one line in ``REGISTERED``; everything else
(``NAMES``, ``select``, the Ctrl-C message's ``built``) is read from that line and the class.
"""

from __future__ import annotations

import sys
from pathlib import Path

from leaddb.backends.base import Backend, BootReport, Capabilities, FloorBoot, Phase
from leaddb.errors import BackendError

# name -> "module:Class", imported only when chosen (docker-py and psycopg are dear to load)
REGISTERED = {
    "docker": "leaddb.backends.docker:DockerBackend",
    "local": "leaddb.backends.local:LocalBackend",
    "dsn": "leaddb.backends.dsn:DsnBackend",
}
NAMES = ("auto", *REGISTERED)
ANY_BUILT = "what was being built (local cluster, container and volume, or database)"


def _class(name: str, *, load: bool = True) -> type[Backend] | None:
    module, _, cls = REGISTERED[name].partition(":")
    if not load and module not in sys.modules:
        return None
    return getattr(__import__(module, fromlist=[cls]), cls)  # as `from m import C` (importtime sees it)


def built_by(name: str) -> str:
    """What a reset by the backend ``name`` builds (its class's ``built``), for the Ctrl-C
    message; for ``auto``, or a backend whose module no task loaded (it built nothing yet),
    the words that fit any."""
    cls = _class(name, load=False) if name in REGISTERED else None
    return cls.built if cls is not None else ANY_BUILT


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
    return _class(name).create(project_dir, dsn=dsn)


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
    "REGISTERED",
    "built_by",
]
