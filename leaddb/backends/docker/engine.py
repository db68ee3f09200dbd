"""The connection to the Docker engine, and what the bench records about it.

``docker.from_env()``: ``DOCKER_HOST``, else the platform default — Docker Desktop's
``npipe:////./pipe/docker_engine`` named pipe on Windows (docker-py needs pywin32 for it,
a dependency on Windows) or ``/var/run/docker.sock`` on Linux.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from leaddb import platforms
from leaddb.errors import BackendError


def default_address() -> str:
    """The engine's address as the user knows it: ``DOCKER_HOST``, else the platform's default
    (what ``docker.from_env()`` connects to; docker-py's own ``base_url`` reads
    ``http+docker://localhost`` for a socket or a pipe, an address nobody can use)."""
    return os.environ.get("DOCKER_HOST") or platforms.docker_default_host()


PYWIN32_HINT = "install pywin32 (pip install -e . installs it on Windows), then retry"


def _needs_pywin32(exc: Exception) -> bool:
    """docker-py on Windows without pywin32: its named-pipe adapter failed to import, so
    ``APIClient`` raises ``DockerException('Install pypiwin32 package to enable npipe://
    support')`` from the NameError that follows (docker/api/client.py, docker 7.x)."""
    return platforms.docker_uses_named_pipes() and (
        isinstance(exc, ImportError) or isinstance(exc.__cause__, NameError) or "pypiwin32" in str(exc)
    )


def answers(timeout: float = 3) -> tuple[bool, str]:
    """Whether an engine answers, and where we looked (for ``--backend auto``)."""
    address = default_address()
    if address.startswith("unix://") and not os.path.exists(address.removeprefix("unix://")):
        # no socket, no engine: said without docker-py, which costs ~0.2 s to import, so
        # `--backend auto` on a machine without Docker pays only for the local backend
        return False, f"no Docker engine answered at {address} (no socket there)"
    try:
        import docker
    except ImportError:
        return False, "the docker Python package is not installed"
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return True, address  # as the user knows it (docker-py's base_url says http+docker://localnpipe)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the engine means "no engine"
        if _needs_pywin32(exc):
            return False, f"docker-py cannot reach {address} without pywin32: {PYWIN32_HINT}"
        return False, f"no Docker engine answered at {address} ({type(exc).__name__})"


def connect():
    """docker-py's client; one clear error when no engine answers."""
    try:
        import docker
    except ImportError:
        raise BackendError(
            "the docker Python package is not installed", hint="pip install -e . (it is a dependency)"
        ) from None
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - every way of not answering means the same to the user
        hint = platforms.docker_start_hint()
        if _needs_pywin32(exc):
            hint = PYWIN32_HINT
        raise BackendError(
            f"no Docker engine answered at {default_address()}: {type(exc).__name__}: {exc}", hint=hint
        ) from None
    return client


def info(client) -> dict:
    """The engine's version, CPUs, memory and storage (what a boot's speed depends on)."""
    try:
        version = client.version()
        details = client.info()
        where = storage(client, details)
    except Exception as exc:  # noqa: BLE001 - informational only
        return {"docker": None, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "docker": version.get("Version"),
        "docker_os": details.get("OperatingSystem"),
        "docker_cpus": details.get("NCPU"),
        "docker_memory_bytes": details.get("MemTotal"),
        "docker_storage": where.to_dict(),
        "storage": where.describe(),  # printed with the bench's table
    }


# -- where the engine stores its data ------------------------------------------------------
# tmpfs and ext4 differ by seconds for the image's initdb: a boot time is read with its
# storage named.

MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class EngineStorage:
    root_dir: str | None
    driver: str | None
    # what the storage driver says it sits on (overlay2: "Backing Filesystem"), from the engine
    backing_filesystem: str | None
    # the filesystem type of root_dir as this host sees it; None when the engine is not local
    host_filesystem: str | None
    engine_host: str | None
    local: bool
    operating_system: str | None
    server_version: str | None

    def describe(self) -> str:
        parts = [f"data root {self.root_dir or '?'}", f"driver {self.driver or '?'}"]
        if self.backing_filesystem:
            parts.append(f"backing filesystem {self.backing_filesystem} (as the driver reports it)")
        if self.local:
            parts.append(f"on this host: {self.host_filesystem or 'filesystem not found'}")
        else:
            parts.append(f"engine host {self.engine_host or '?'} is not this machine")
        if self.operating_system:
            parts.append(self.operating_system)
        if self.server_version:
            parts.append(f"Docker {self.server_version}")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def filesystem_of(path: str | Path, mountinfo: Path = MOUNTINFO) -> str | None:
    """The filesystem type of the mount holding ``path`` (the longest mount point that
    contains it, the last one mounted winning a tie), from ``/proc/self/mountinfo``;
    None where there is no such file (not Linux) or nothing matches."""
    try:
        target = Path(os.path.realpath(path))
        lines = mountinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        mount_point = Path(_unescape(fields[4]))
        fstype = fields[fields.index("-") + 1] if fields.index("-") + 1 < len(fields) else None
        if fstype is None or not (target == mount_point or mount_point in target.parents):
            continue
        depth = len(mount_point.parts)
        if best is None or depth >= best[0]:
            best = (depth, fstype)
    return best[1] if best else None


def storage(client=None, details: dict | None = None) -> EngineStorage:
    """Ask the engine (``docker info``) where its data root is and on what it sits.

    The data root's filesystem is looked up on this host only when the engine runs here:
    reached through a local socket and reporting this machine's host name (Docker Desktop
    and remote engines keep their data root inside their own machine). ``details``: the
    engine's ``docker info`` when the caller already has it (one round trip, not two)."""
    if client is None:
        import docker  # lazily: only the Docker path pays for docker-py

        client = docker.from_env(timeout=5)
    info = details if details is not None else client.info()
    driver_status = dict(tuple(pair) for pair in info.get("DriverStatus") or [] if len(pair) == 2)
    root_dir = info.get("DockerRootDir")
    base_url = str(getattr(getattr(client, "api", None), "base_url", ""))
    engine_host = info.get("Name")
    local = (
        base_url.startswith(("http+unix://", "http+docker://", "unix://"))
        and bool(engine_host)
        and engine_host == socket.gethostname()
        and info.get("OperatingSystem") != "Docker Desktop"
    )
    return EngineStorage(
        root_dir=root_dir,
        driver=info.get("Driver"),
        backing_filesystem=driver_status.get("Backing Filesystem"),
        host_filesystem=filesystem_of(root_dir) if local and root_dir else None,
        engine_host=engine_host,
        local=local,
        operating_system=info.get("OperatingSystem"),
        server_version=info.get("ServerVersion"),
    )
