"""What a Docker engine stores its data on: data root, storage driver and the filesystem
beneath, so a boot time can be read with its storage named (tmpfs and ext4 differ by
seconds for initdb). Import it only where Docker is used: it imports docker-py lazily."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

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


def storage(client=None) -> EngineStorage:
    """Ask the engine (``docker info``) where its data root is and on what it sits.

    The data root's filesystem is looked up on this host only when the engine runs here:
    reached through a local socket and reporting this machine's host name (Docker Desktop
    and remote engines keep their data root inside their own machine)."""
    if client is None:
        import docker  # lazily: only the Docker path pays for docker-py

        client = docker.from_env(timeout=5)
    info = client.info()
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
