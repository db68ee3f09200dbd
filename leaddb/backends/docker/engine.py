"""The connection to the Docker engine, and what the bench records about it.

``docker.from_env()``: ``DOCKER_HOST``, else the platform default — Docker Desktop's
``npipe:////./pipe/docker_engine`` named pipe on Windows (docker-py needs pywin32 for it,
a dependency on Windows) or ``/var/run/docker.sock`` on Linux.
"""

from __future__ import annotations

import os

from leaddb import platforms
from leaddb.errors import BackendError


def default_address() -> str:
    return os.environ.get("DOCKER_HOST") or platforms.docker_default_host()


def answers(timeout: float = 3) -> tuple[bool, str]:
    """Whether an engine answers, and where we looked (for ``--backend auto``)."""
    try:
        import docker
    except ImportError:
        return False, "the docker Python package is not installed"
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return True, client.api.base_url
    except Exception as exc:  # noqa: BLE001 - any failure to reach the engine means "no engine"
        return False, f"no Docker engine answered at {default_address()} ({type(exc).__name__})"


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
        hint = (
            "start Docker Desktop and wait until it says the engine is running"
            if platforms.IS_WINDOWS
            else "start the engine (sudo systemctl start docker; in CI: bash .ci/docker-engine.sh start "
            "and export DOCKER_HOST), or use --backend local"
        )
        if platforms.IS_WINDOWS and isinstance(exc, ImportError | ModuleNotFoundError):
            hint = "install pywin32 (pip install -e . installs it on Windows), then retry"
        raise BackendError(
            f"no Docker engine answered at {default_address()}: {type(exc).__name__}: {exc}", hint=hint
        ) from None
    return client


def info(client) -> dict:
    """The engine's version, storage driver and data root (what a boot's speed depends on)."""
    try:
        version = client.version()
        details = client.info()
    except Exception as exc:  # noqa: BLE001 - informational only
        return {"docker": None, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "docker": version.get("Version"),
        "docker_os": details.get("OperatingSystem"),
        "docker_storage_driver": details.get("Driver"),
        "docker_root_dir": details.get("DockerRootDir"),
        "docker_cpus": details.get("NCPU"),
        "docker_memory_bytes": details.get("MemTotal"),
    }
