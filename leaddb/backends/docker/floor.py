"""The bench's floor for a Docker reset: the same container booted by a bare ``docker run``.

What a user does by hand without this tool: ``docker run -d`` of the compose service's image
with the settings our reset gives its container (``ServiceSpec.create_kwargs``: environment,
command, healthcheck, shm size, the migrations bind-mounted at the init directory, a fresh
named volume at the data directory, the port published on the same host address, the
project's bridge network), then ``pg_isready`` on the published port until the server
answers; then ``docker rm -f`` and ``docker volume rm``, timed apart: what a reset pays first
for the previous boot. The same without the migrations mount is the image's bare boot, what
the bench's verdict calls this machine's floor. It runs in this process through docker-py
(``containers.run``: the create and start calls ``docker run -d`` makes) and libpq's
``PQping`` (what ``pg_isready`` calls) every 50 ms, so neither a CLI's start-up nor a coarse
poll is in the floor.

It uses names of its own (``<project>-bare-run-1``, volume ``<project>_bare-run_<key>``) and a
free port of its own, since our container holds the project's port meanwhile; it carries the
label ``org.leaddb.bench-floor`` and leaves nothing behind.
"""

from __future__ import annotations

import socket
import time

from leaddb.backends.base import FloorBoot
from leaddb.backends.docker import bootlog
from leaddb.backends.docker.service import ServiceSpec, Twin
from leaddb.errors import BackendError

LABEL = "org.leaddb.bench-floor"
TEXT = "bare docker run (same image, mount, volume)"
BARE_TEXT = "bare docker run, no migrations (same image, volume)"
POLL = 0.05  # seconds between two pings: `until pg_isready; do sleep 0.05; done`
STATE_EVERY = 5.0  # seconds between two looks at whether the container still runs (an inspect)


def twin_of(spec: ServiceSpec, host: str) -> Twin:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    return Twin(
        name=f"{spec.project}-bare-run-1",
        volume_prefix=f"{spec.project}_bare-run_",
        host_port=port,
        labels={LABEL: spec.project},
    )


def answers(conninfo: bytes) -> bool:
    """``pg_isready``: the server at ``conninfo`` accepts connections (no authentication)."""
    from psycopg import pq

    return pq.PGconn.ping(conninfo) == pq.Ping.OK


def run(
    client, spec: ServiceSpec, *, host: str, user: str, timeout: float, migrations: bool = True
) -> FloorBoot:
    """One bare boot, timed: create and start until it answers; then its removal.
    ``migrations=False``: without the migrations mount, the image's own first boot."""
    from psycopg.conninfo import make_conninfo

    twin = twin_of(spec, host)
    volumes = [twin.volume(key) for key in spec.service.volume_names]
    remove(client, twin.name, volumes)  # what an interrupted bench left
    kwargs = spec.create_kwargs(client, twin=twin, init_files=migrations)
    conninfo = make_conninfo(
        host=host, port=twin.host_port, user=user, dbname="postgres", connect_timeout=2, sslmode="disable"
    ).encode()
    started = time.perf_counter()
    try:
        container = client.containers.run(spec.service.image, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the engine's reason, reworded
        remove(client, twin.name, volumes)
        raise BackendError(
            f"the bench's bare docker run ({twin.name}) could not start: "
            f"{getattr(exc, 'explanation', None) or exc}",
            hint="a reset of the same service boots? then see the engine's reason above",
        ) from None
    try:
        _wait_answers(container, conninfo, started + timeout)
        boot = time.perf_counter() - started
    finally:
        # `docker rm -f` and `docker volume rm`: ours, just made, so no label check to time
        removing = time.perf_counter()
        container.remove(force=True, v=True)
        for volume in volumes:
            client.api.remove_volume(volume, force=True)
        removed = time.perf_counter() - removing
    return FloorBoot(TEXT if migrations else BARE_TEXT, boot, removed, subject=spec.service.image)


def _wait_answers(container, conninfo: bytes, deadline: float) -> None:
    looked = time.perf_counter()
    while not answers(conninfo):
        now = time.perf_counter()
        if now - looked >= STATE_EVERY or now > deadline:
            looked = now
            container.reload()
            stopped = container.status not in ("running", "created", "restarting")
            if stopped or now > deadline:
                lines = bootlog.parse_log(container.logs(timestamps=True))
                raise BackendError(
                    f"the bench's bare docker run ({container.name}) "
                    + (f"exited ({container.status})" if stopped else "did not answer in time")
                    + f" before its server answered; last log lines:\n{bootlog.tail(lines)}",
                    hint="a reset of the same service boots? then see the log above; "
                    f"raise {bootlog.BOOT_TIMEOUT_ENV} if the engine is just slow",
                )
        time.sleep(POLL)


def remove(client, name: str, volumes: list[str]) -> None:
    """What an interrupted bench left: the twin's container and volumes, when they carry its
    label (never anything else)."""
    import docker.errors

    try:
        found = client.api.inspect_container(name)
    except docker.errors.NotFound:
        found = None
    if found is not None:
        if LABEL not in (found.get("Config", {}).get("Labels") or {}):
            raise BackendError(
                f"container {name} exists without the label {LABEL}: not the bench's; leaving it alone",
                hint="remove or rename it yourself, or choose another project name (COMPOSE_PROJECT_NAME)",
            )
        client.api.remove_container(found["Id"], force=True, v=True)
    for volume in volumes:
        try:
            labels = client.api.inspect_volume(volume).get("Labels") or {}
        except docker.errors.NotFound:
            continue
        if LABEL not in labels:
            raise BackendError(
                f"volume {volume} exists without the label {LABEL}: not the bench's; leaving it alone",
                hint="remove it yourself, or choose another project name (COMPOSE_PROJECT_NAME)",
            )
        client.api.remove_volume(volume, force=True)
