"""Read the ``postgres`` service of ``docker-compose.yml`` as Compose would.

One source of truth: image, environment, volumes, ports, health check and command
come from the compose file, with ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
``${VAR:?err}`` and ``$$`` interpolated from the process environment and ``.env``
(the environment wins, as in Compose).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from leaddb.errors import LeadDbError

COMPOSE_FILENAME = "docker-compose.yml"
SERVICE = "postgres"
INITDB_DIR = PurePosixPath("/docker-entrypoint-initdb.d")

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class ComposeError(LeadDbError):
    pass


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; quotes stripped; comments and blank lines ignored."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    def replace(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("named")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        unset_or_empty = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":-", "-") and unset_or_empty:
            return interpolate(arg, env)
        if op in (":?", "?") and unset_or_empty:
            raise ComposeError(f"{COMPOSE_FILENAME}: variable {name} is required: {arg}")
        return current or ""

    return _VAR.sub(replace, value)


def _interpolate_tree(node, env):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env) for k, v in node.items()}
    return node


@dataclass(frozen=True)
class Mount:
    source: str  # a host path (relative to the project) or a volume name
    target: PurePosixPath
    read_only: bool
    is_volume: bool


@dataclass(frozen=True)
class PortBinding:
    host_ip: str
    host_port: int
    container_port: int


@dataclass(frozen=True)
class PostgresService:
    project_dir: Path
    project_name: str
    compose_file: Path
    image: str
    environment: dict[str, str]
    mounts: tuple[Mount, ...]
    ports: tuple[PortBinding, ...]
    healthcheck: dict = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    volume_names: dict[str, str] = field(default_factory=dict)  # compose key -> engine name
    raw: dict = field(default_factory=dict)

    @property
    def initdb_mount(self) -> Mount | None:
        return next((m for m in self.mounts if m.target == INITDB_DIR), None)


def normalise_project_name(name: str) -> str:
    """Compose's rule: lowercase, only ``[a-z0-9_-]``, starting with a letter or digit."""
    name = re.sub(r"[^a-z0-9_-]", "", name.lower())
    return name.lstrip("_-")


def _parse_mount(entry) -> Mount:
    if isinstance(entry, dict):
        source = str(entry.get("source", ""))
        return Mount(
            source,
            PurePosixPath(entry["target"]),
            bool(entry.get("read_only", False)),
            entry.get("type") == "volume",
        )
    parts = str(entry).split(":")
    source, target = parts[0], parts[1] if len(parts) > 1 else parts[0]
    options = parts[2].split(",") if len(parts) > 2 else []
    is_volume = not (source.startswith((".", "/", "~")) or "\\" in source)
    return Mount(source, PurePosixPath(target), "ro" in options, is_volume)


def _parse_port(entry) -> PortBinding:
    if isinstance(entry, dict):
        return PortBinding(str(entry.get("host_ip", "")), int(entry["published"]), int(entry["target"]))
    parts = str(entry).split(":")
    if len(parts) == 3:
        return PortBinding(parts[0], int(parts[1]), int(parts[2].split("/")[0]))
    if len(parts) == 2:
        return PortBinding("", int(parts[0]), int(parts[1].split("/")[0]))
    raise ComposeError(f"{COMPOSE_FILENAME}: port {entry!r} publishes no host port")


def load_service(
    project_dir: Path, *, project_name: str | None = None, environ: dict[str, str] | None = None
) -> PostgresService:
    compose_file = project_dir / COMPOSE_FILENAME
    try:
        document = yaml.safe_load(compose_file.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ComposeError(
            f"{compose_file}: missing",
            hint=f"restore {COMPOSE_FILENAME} (git checkout -- {COMPOSE_FILENAME})",
        ) from None
    except yaml.YAMLError as exc:
        raise ComposeError(f"{compose_file}: not valid YAML: {exc}") from None
    env = {**read_dotenv(project_dir / ".env"), **(os.environ if environ is None else environ)}
    document = _interpolate_tree(document, env)
    service = (document.get("services") or {}).get(SERVICE)
    if not isinstance(service, dict):
        raise ComposeError(f"{compose_file}: no service named {SERVICE!r}")
    name = normalise_project_name(
        project_name or env.get("COMPOSE_PROJECT_NAME") or document.get("name") or project_dir.resolve().name
    )
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(
            item.split("=", 1) if "=" in item else (item, env.get(item, "")) for item in environment
        )
    mounts = tuple(_parse_mount(v) for v in service.get("volumes") or [])
    volumes = document.get("volumes") or {}
    volume_names = {}
    for key in (m.source for m in mounts if m.is_volume):
        declared = volumes.get(key) or {}
        volume_names[key] = declared.get("name") or f"{name}_{key}"
    command = service.get("command")
    if isinstance(command, str):
        command = tuple(command.split())
    return PostgresService(
        project_dir=project_dir,
        project_name=name,
        compose_file=compose_file,
        image=str(service.get("image", "")),
        environment={str(k): "" if v is None else str(v) for k, v in environment.items()},
        mounts=mounts,
        ports=tuple(_parse_port(p) for p in service.get("ports") or []),
        healthcheck=service.get("healthcheck") or {},
        command=tuple(command) if command else None,
        volume_names=volume_names,
        raw=service,
    )
