"""The compose ``postgres`` service turned into what ``docker compose up -d postgres`` creates:
container ``<project>-postgres-1`` on network ``<project>_default`` (alias ``postgres``) with
volume ``<project>_<key>``, all carrying Compose's ``com.docker.compose.*`` labels, so that
``docker compose ps``, ``exec`` and ``down -v`` manage them and a later ``docker compose up``
finds them and keeps them: the container's labels are the ones Compose v2 gives its own (the
config hash and version the Compose CLI gives, ``compose_cli``; the image id; ``depends_on``).
The network and volume carry no config hash, which Compose takes as "no change" (a wrong one
would make it recreate them). Every setting comes from the compose file (``leaddb.compose``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from leaddb import compose, platforms
from leaddb.backends.docker.compose_cli import CHECKED_VERSION
from leaddb.errors import BackendError

if TYPE_CHECKING:
    from leaddb.backends.docker.compose_cli import Answer

LABEL = "com.docker.compose."
# What of the compose service this backend applies when it creates the container itself;
# anything else ("x-" extensions aside) is refused rather than silently left out. (`restart`
# too: a restarted container skips initialisation, hiding the init file that failed.)
SERVICE_KEYS = ("image", "environment", "volumes", "ports", "healthcheck", "command", "shm_size")


@dataclass(frozen=True)
class Twin:
    """Other names for the same container: the bench's bare ``docker run`` beside ours."""

    name: str
    volume_prefix: str
    host_port: int
    labels: dict[str, str]

    def volume(self, key: str) -> str:
        return f"{self.volume_prefix}{key}"


def duration(value) -> int:
    """A compose duration ("1s", "1m30s", "500ms") in nanoseconds, as the engine wants."""
    if isinstance(value, int | float):
        return int(value * 1e9)
    units = {"h": 3600e9, "m": 60e9, "s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", str(value)):
        total += float(number) * units[unit]
    return int(total)


class ServiceSpec:
    """Names, labels and the engine's create arguments for one compose project's service."""

    def __init__(self, service: compose.PostgresService) -> None:
        self.service = service
        self.project = service.project_name
        self.container_name = f"{self.project}-{compose.SERVICE}-1"
        self.network_name = f"{self.project}_default"

    # -- labels ----------------------------------------------------------------------
    def project_labels(self) -> dict[str, str]:
        return {LABEL + "project": self.project}

    def base_labels(self) -> dict[str, str]:
        """What names the container as the project's service (what every task finds it by)."""
        return {
            **self.project_labels(),
            LABEL + "service": compose.SERVICE,
            LABEL + "container-number": "1",
            LABEL + "oneoff": "False",
            LABEL + "project.working_dir": str(self.service.project_dir.resolve()),
            LABEL + "project.config_files": str(self.service.compose_file.resolve()),
        }

    def container_labels(self, compose_answer: Answer, image_id: str) -> dict[str, str]:
        """Every label Compose v2 gives a service container it creates: with these, a later
        ``docker compose up`` finds nothing changed and keeps the container (when the hash is
        Compose's own: ``compose_answer.from_compose``)."""
        return {
            **self.base_labels(),
            LABEL + "version": compose_answer.version,
            LABEL + "config-hash": compose_answer.config_hash,
            LABEL + "image": image_id,
            # the service's dependencies as "service:condition:restart", comma-separated; the
            # service may not declare any (SERVICE_KEYS)
            LABEL + "depends_on": "",
        }

    def volume_labels(self, key: str, version: str = CHECKED_VERSION) -> dict[str, str]:
        return {**self.project_labels(), LABEL + "volume": key, LABEL + "version": version}

    def network_labels(self, version: str = CHECKED_VERSION) -> dict[str, str]:
        return {**self.project_labels(), LABEL + "network": "default", LABEL + "version": version}

    def is_ours(self, labels: dict | None, **expected: str) -> bool:
        labels = labels or {}
        wanted = {**self.project_labels(), **{LABEL + k: v for k, v in expected.items()}}
        return all(labels.get(k) == v for k, v in wanted.items())

    # -- checks ----------------------------------------------------------------------
    def check_keys(self) -> None:
        """A reset refuses a service setting it would not apply to the container it creates;
        the tasks that use an existing container (apply, introspect, down) do not care."""
        unsupported = sorted(
            k for k in self.service.raw if k not in SERVICE_KEYS and not str(k).startswith("x-")
        )
        if unsupported:
            raise BackendError(
                f"{self.service.compose_file.name}: service {compose.SERVICE!r} sets "
                f"{', '.join(unsupported)}, which the docker backend does not apply to the container "
                "it creates"
                + (
                    " (restart: a container restarted after a failed init file skips initialisation, "
                    "which would hide the failure)"
                    if "restart" in unsupported
                    else ""
                ),
                hint=f"express it with {', '.join(SERVICE_KEYS)}; or start the service with "
                "`docker compose up -d postgres` and use `--backend dsn`",
            )

    # -- the container ---------------------------------------------------------------
    def bind_source(self, source: str) -> str:
        """A bind mount's host directory, as the engine wants it (``leaddb.platforms``)."""
        path = self.service.project_dir / Path(*PurePosixPath(source).parts)
        if not path.exists():
            raise BackendError(
                f"{self.service.compose_file.name} mounts {source}, but {path} does not exist",
                hint="create it, or fix the volumes: entry of the postgres service",
            )
        return platforms.docker_mount_source(path)

    def create_kwargs(
        self,
        client,
        *,
        init_files: bool = True,
        twin: Twin | None = None,
        labels: dict[str, str] | None = None,
    ) -> dict:
        """``client.containers.create`` arguments. Named volumes go as mounts; bind mounts in
        the ``volumes``/binds form, which Docker Desktop takes with a Windows path (the
        mount form fails there: docker-py issue 2661). ``twin``: the same container under
        other names (the bench's bare ``docker run``). ``labels``: the container's (a reset
        passes ``container_labels``; default ``base_labels``)."""
        from docker.types import Healthcheck, Mount

        name = twin.name if twin else self.container_name
        mounts, binds = [], {}
        for mount in self.service.mounts:
            if mount.target == compose.INITDB_DIR and not init_files:
                continue
            if mount.is_volume:
                if twin:  # created by the engine on first use, as `docker run -v name:/path` does
                    mounts.append(
                        Mount(
                            str(mount.target),
                            twin.volume(mount.source),
                            type="volume",
                            read_only=mount.read_only,
                            labels=twin.labels,
                        )
                    )
                    continue
                volume = self.service.volume_names[mount.source]
                mounts.append(Mount(str(mount.target), volume, type="volume", read_only=mount.read_only))
            else:
                binds[self.bind_source(mount.source)] = {
                    "bind": str(mount.target),
                    "mode": "ro" if mount.read_only else "rw",
                }
        port = self.service.ports[0]
        host_port = twin.host_port if twin else port.host_port
        kwargs: dict = {
            "name": name,
            "labels": dict(twin.labels) if twin else dict(labels or self.base_labels()),
            "environment": dict(self.service.environment),
            "command": list(self.service.command) if self.service.command else None,
            "mounts": mounts,
            "volumes": binds,
            "ports": {f"{port.container_port}/tcp": (port.host_ip or "0.0.0.0", host_port)},
            "network": self.network_name,
            "networking_config": {
                self.network_name: client.api.create_endpoint_config(
                    # the twin does not answer to the service's name: only the real one does
                    aliases=[name] if twin else [name, compose.SERVICE]
                )
            },
            "detach": True,
        }
        if self.service.raw.get("shm_size") is not None:
            kwargs["shm_size"] = self.service.raw["shm_size"]
        check = self.service.healthcheck
        if check.get("test") and not check.get("disable"):
            kwargs["healthcheck"] = Healthcheck(
                test=check["test"],
                interval=duration(check.get("interval", "30s")),
                timeout=duration(check.get("timeout", "30s")),
                retries=int(check.get("retries", 3)),
                start_period=duration(check.get("start_period", "0s")),
            )
        return kwargs
