"""Read the ``postgres`` service of ``docker-compose.yml`` as Compose would.

One source of truth: image, environment, volumes, ports, health check and command
come from the compose file. ``.env`` is read as Compose reads it (``leaddb/envfile.py``);
values in ``.env`` and in the compose file are interpolated by Compose's documented rules
(``leaddb/interpolation.py``).
The process environment wins over ``.env``, as in Compose.

Whatever the file holds, reading it ends in a ``PostgresService`` or in one
``ComposeError`` naming the file and line: never a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from leaddb.envfile import (  # noqa: F401 - MAX_FILE_BYTES, read_dotenv: the compose file's too
    MAX_FILE_BYTES,
    read_dotenv,
    read_dotenv_bindings,
    read_text,
)
from leaddb.errors import ComposeError, excerpt
from leaddb.interpolation import (  # noqa: F401 - MAX_*, interpolate: the compose file's limits and engine
    DOTENV_FILENAME,
    MAX_NESTING,
    MAX_VALUE,
    InterpolationError,
    Lookup,
    Variable,
    interpolate,
)
from leaddb.interpolation import Made as _Made
from leaddb.interpolation import expand as _expand
from leaddb.interpolation import quoted as _quoted

COMPOSE_FILENAME = "docker-compose.yml"
SERVICE = "postgres"
INITDB_DIR = PurePosixPath("/docker-entrypoint-initdb.d")

_STR_TAG = "tag:yaml.org,2002:str"


# -- the service ------------------------------------------------------------------------------


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
    ports: tuple[PortBinding, ...]  # the entries that publish one fixed TCP host port
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


class _Document:
    """The parsed compose file with its YAML nodes, so every error names the line, and
    the variables each value was interpolated from, so it names them too."""

    def __init__(self, root: yaml.Node, data, used: dict[int, list[Variable]]) -> None:
        self.root = root
        self.data = data
        self.used = used

    def _node(self, path: tuple) -> yaml.Node:
        node = self.root
        for step in path:
            if isinstance(node, yaml.MappingNode):
                child = next((v for k, v in node.value if getattr(k, "value", None) == step), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
                child = node.value[step]
            else:
                child = None
            if child is None:
                break
            node = child
        return node

    def value(self, path: tuple):
        """The parsed value at ``path`` (keys and list indexes), None when absent."""
        value = self.data
        for step in path:
            if isinstance(value, dict):
                value = value.get(step)
            elif isinstance(value, list) and isinstance(step, int) and step < len(value):
                value = value[step]
            else:
                return None
        return value

    def error(self, path: tuple, message: str, *, hint: str | None = None) -> ComposeError:
        node = self._node(path)
        variables = list(dict.fromkeys(self.used.get(id(node), [])))  # each once, in order
        origin = ""
        if variables:
            more = f" and {len(variables) - 5} more" if len(variables) > 5 else ""
            origin = " (after interpolating " + ", ".join(v.describe() for v in variables[:5]) + more + ")"
        return ComposeError(
            f"{COMPOSE_FILENAME}:{node.start_mark.line + 1}: {message}{origin}",
            hint=hint or f"fix {COMPOSE_FILENAME}; `docker compose config` shows how Compose reads it",
        )


# PyYAML's scanner looks at every open flow collection (`[`, `{`) for each token: deep nesting
# makes reading quadratic (900 levels and a megabyte of values took minutes)
MAX_FLOW_NESTING = 64


class _ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it: safe, plus Compose's own merge tags. In a single file,
    ``!reset`` clears a value and ``!override`` is the value itself. Flow collections nest at
    most ``MAX_FLOW_NESTING`` deep."""

    def fetch_flow_collection_start(self, TokenClass) -> None:  # noqa: N803 - PyYAML's name
        if self.flow_level >= MAX_FLOW_NESTING:
            raise yaml.scanner.ScannerError(
                None, None, f"`[` and `{{` nested more than {MAX_FLOW_NESTING} deep", self.get_mark()
            )
        super().fetch_flow_collection_start(TokenClass)


def _override(loader: yaml.SafeLoader, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_ComposeLoader.add_constructor("!reset", lambda loader, node: None)
_ComposeLoader.add_constructor("!override", _override)


def _load_document(text: str, lookup: Lookup) -> _Document:
    hint = f"fix the YAML there; `docker compose config` checks {COMPOSE_FILENAME} the same way"
    loader = None
    try:
        loader = _ComposeLoader(text)
        root = loader.get_single_node()
        if root is None:
            raise ComposeError(
                f"{COMPOSE_FILENAME} is empty",
                hint=f"restore it (git checkout -- {COMPOSE_FILENAME}); it defines `services: postgres:`",
            )
        _check_aliases(root)
        used = _interpolate_nodes(root, lookup)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{COMPOSE_FILENAME}:{mark.line + 1}:{mark.column + 1}" if mark else COMPOSE_FILENAME
        problem = "; ".join(p for p in (exc.context, exc.problem) if p)
        raise ComposeError(f"{where}: not valid YAML: {excerpt(problem, 200)}", hint=hint) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow; no mark, a position
        line = text[: exc.position].count("\n") + 1
        raise ComposeError(
            f"{COMPOSE_FILENAME}:{line}: not valid YAML: character {exc.character:#06x} is not allowed",
            hint=hint,
        ) from None
    except yaml.YAMLError as exc:
        raise ComposeError(
            f"{COMPOSE_FILENAME}: not valid YAML: {excerpt(str(exc), 200)}", hint=hint
        ) from None
    except RecursionError:
        raise ComposeError(f"{COMPOSE_FILENAME}: nested too deeply to read", hint=hint) from None
    finally:
        if loader is not None:
            loader.dispose()
    return _Document(root, data, used)


# the most values the document may hold with its aliases expanded (YAML's "billion laughs": nine
# aliases of nine aliases of … expand to billions). PyYAML shares an aliased value rather than
# copying it, but whatever walks the service (its JSON for the labels, a message) expands it.
# Compose's YAML library (yaml.v3) refuses "excessive aliasing" likewise, and a value that
# contains itself.
MAX_EXPANDED_VALUES = 100_000


def _check_aliases(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it past ``MAX_EXPANDED_VALUES`` values, or make a
    value contain itself; one pass over the node graph, each node once."""
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        if children_done:
            open_.discard(key)
            size[key] = min(1 + sum(size[id(c)] for c in children), MAX_EXPANDED_VALUES + 1)
            if size[key] > MAX_EXPANDED_VALUES:
                raise ComposeError(
                    f"{COMPOSE_FILENAME}:{node.start_mark.line + 1}: the file holds more than "
                    f"{MAX_EXPANDED_VALUES} values, its aliases expanded",
                    hint="write the values out, or alias each a few times at most",
                )
            continue
        if key in size:
            continue
        open_.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_:
                raise ComposeError(
                    f"{COMPOSE_FILENAME}:{child.start_mark.line + 1}: an alias refers to a value that "
                    "contains it",
                    hint="an anchor's value cannot hold an alias of itself",
                )
            if id(child) not in size:
                stack.append((child, False))


def _interpolate_nodes(root: yaml.Node, lookup: Lookup) -> dict[int, list[Variable]]:
    """Interpolate every string value (not mapping keys) in place; which variables each read."""
    used: dict[int, list[Variable]] = {}
    seen: set[int] = set()
    made = _Made()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                _refuse_nul(key)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif node.tag == _STR_TAG and "$" in node.value:
            variables: list[Variable] = []
            try:
                node.value = _expand(node.value, lookup, variables, made)
            except InterpolationError as exc:
                raise ComposeError(
                    f"{COMPOSE_FILENAME}:{node.start_mark.line + 1}: {exc.detail}", hint=exc.hint
                ) from None
            used[id(node)] = variables
        _refuse_nul(node)
    return used


def _refuse_nul(node: yaml.Node) -> None:
    """A NUL character (YAML's "\\0", or one from .env) cannot reach a process or a server."""
    if isinstance(node, yaml.ScalarNode) and "\0" in node.value:
        raise ComposeError(
            f"{COMPOSE_FILENAME}:{node.start_mark.line + 1}: a value contains a NUL character",
            hint="remove it (a \\0 escape in the file, or a NUL byte in .env)",
        )


def _scalar(value) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _as_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _whole_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")
_BYTES = re.compile(r"\d+(?:\.\d+)?\s*(?:[bkmg]b?)?", re.IGNORECASE)
# docker's reference grammar: [registry[:port]/]path[:tag][@digest]
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?))*"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?:{_DOMAIN}(?::\d+)?/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    re.ASCII,
)
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_PORT_HINT = 'publish the server on loopback, e.g. ports: ["127.0.0.1:${POSTGRES_PORT:-5432}:5432"]'
_AT = ("services", SERVICE)


def _port_number(doc: _Document, path: tuple, entry, text: str, what: str) -> int | None:
    """A port, or None for a range (valid for Compose, but not one fixed port)."""
    low, _, high = text.partition("-")
    numbers = [low, high] if high else [low]
    if not all(n.isascii() and n.isdigit() and 1 <= int(n) <= 65535 for n in numbers) or (
        high and int(low) > int(high)
    ):
        raise doc.error(
            path,
            f"port entry {_quoted(entry)}: the {what} {_quoted(text)} is not a port number (1-65535)",
            hint=_PORT_HINT,
        )
    return None if high else int(low)


def _split_port(doc: _Document, path: tuple, entry: str) -> tuple[str, str, str, str]:
    """``[[IP:]HOST:]CONTAINER[/PROTOCOL]`` (IPv6 in brackets) as (ip, host, container, protocol)."""
    spec, _, protocol = entry.strip().partition("/")
    host_ip = ""
    if spec.startswith("["):
        host_ip, bracket, spec = spec[1:].partition("]")
        if not bracket or not spec.startswith(":") or spec.count(":") != 2:
            raise doc.error(
                path, f"port entry {_quoted(entry)} is not [IPv6]:HOST_PORT:CONTAINER_PORT", hint=_PORT_HINT
            )
        spec = spec[1:]
    parts = spec.split(":")
    if len(parts) > 3 or (host_ip and len(parts) != 2):
        raise doc.error(
            path, f"port entry {_quoted(entry)} is not [[IP:]HOST_PORT:]CONTAINER_PORT", hint=_PORT_HINT
        )
    if len(parts) == 3:
        host_ip = parts.pop(0)
    host = parts[0] if len(parts) == 2 else ""
    return host_ip, host, parts[-1], protocol or "tcp"


def _parse_port(doc: _Document, path: tuple, entry) -> PortBinding | None:
    """One ``ports`` entry; None when it publishes no fixed TCP host port (a container port
    only, a range, UDP): valid Compose that the docker backend cannot connect through."""
    if isinstance(entry, dict):
        target, published = entry.get("target"), entry.get("published")
        if target is None or not _scalar(target) or not _scalar(published):
            raise doc.error(path, "a port mapping needs `target:` (the container port) and `published:`")
        host_ip, host, container = _as_text(entry.get("host_ip")), _as_text(published), _as_text(target)
        protocol = _as_text(entry.get("protocol") or "tcp")
    elif _whole_number(entry) or isinstance(entry, str):
        host_ip, host, container, protocol = _split_port(doc, path, str(entry))
    else:
        raise doc.error(
            path, f"port entry {_quoted(entry)} is neither a string nor a mapping", hint=_PORT_HINT
        )
    container_port = _port_number(doc, path, entry, container, "container port")
    host_port = _port_number(doc, path, entry, host, "host port") if host else None
    if protocol not in ("tcp", "udp", "sctp"):
        raise doc.error(
            path, f"port entry {_quoted(entry)}: unknown protocol {_quoted(protocol)} (tcp, udp or sctp)"
        )
    if host_ip and host_ip != "localhost":
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise doc.error(
                path, f"port entry {_quoted(entry)}: {_quoted(host_ip)} is not an IP address"
            ) from None
    if host_port is None or container_port is None or protocol != "tcp":
        return None
    return PortBinding(host_ip, host_port, container_port)


def _parse_mount(doc: _Document, path: tuple, entry) -> Mount:
    if isinstance(entry, dict):
        kind = _as_text(entry.get("type") or "volume")
        source, target, read_only = entry.get("source"), entry.get("target"), entry.get("read_only", False)
        if kind not in ("volume", "bind"):
            raise doc.error(
                path, f"volume entry of type {_quoted(kind)}: only `volume` and `bind` are supported"
            )
        if not isinstance(target, str) or not _scalar(source) or not _as_text(source):
            raise doc.error(path, "a volume mapping needs `source:` and `target:`")
        if not isinstance(read_only, bool):
            raise doc.error(path, f"read_only is {_quoted(read_only)}, not true or false")
        mount = Mount(_as_text(source), PurePosixPath(target), read_only, kind == "volume")
    elif isinstance(entry, str) and entry.strip():
        drive = entry[:2] if _WINDOWS_DRIVE.match(entry) else ""
        parts = entry[len(drive) :].split(":")
        parts[0] = drive + parts[0]
        if len(parts) == 1:
            raise doc.error(
                path,
                f"volume entry {_quoted(entry)} is an anonymous volume, which the tooling does not manage",
                hint="name it, e.g. pgdata:/var/lib/postgresql/data, and declare it under top-level volumes:",
            )
        if len(parts) > 3 or not parts[0] or not parts[1]:
            raise doc.error(path, f"volume entry {_quoted(entry)} is not SOURCE:TARGET[:MODE]")
        source, target = parts[0], parts[1]
        options = parts[2].split(",") if len(parts) > 2 else []
        is_volume = not (source.startswith((".", "/", "~")) or "\\" in source or drive)
        mount = Mount(source, PurePosixPath(target), "ro" in options, is_volume)
    else:
        raise doc.error(path, f"volume entry {_quoted(entry)} is neither SOURCE:TARGET[:MODE] nor a mapping")
    if not mount.target.is_absolute():
        raise doc.error(
            path,
            f"volume entry {_quoted(entry)}: the container path {_quoted(str(mount.target))} is not absolute",
        )
    return mount


def _entries(doc: _Document, key: str) -> list:
    entries = doc.value((*_AT, key)) or []
    if not isinstance(entries, list):
        raise doc.error((*_AT, key), f"`{key}:` is not a list")
    return entries


def _service(doc: _Document, restore: str) -> dict:
    document = doc.data
    if not isinstance(document, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean"}.get(type(document), "a single value")
        raise doc.error((), f"the top level is {kind}, not a mapping with `services:`", hint=restore)
    services = document.get("services")
    if not isinstance(services, dict):
        problem = "defines no `services:`" if services is None else "`services:` is not a mapping"
        raise doc.error(("services",), problem, hint=restore)
    service = services.get(SERVICE)
    if not isinstance(service, dict):
        problem = (
            f"service {SERVICE!r} is not a mapping"
            if service is not None
            else f"no service named {SERVICE!r}"
        )
        raise doc.error(_AT, problem, hint=restore)
    return service


def _project_name(doc: _Document, given: str | None, project_dir: Path) -> str:
    source = given or doc.value(("name",)) or project_dir.resolve().name
    name = normalise_project_name(_as_text(source)) if _scalar(source) else ""
    if not name:
        raise doc.error(
            ("name",),
            f"the project name {_quoted(source)} has no letter or digit",
            hint="set `name:` in the compose file, or COMPOSE_PROJECT_NAME, to letters, digits, - and _",
        )
    return name


def _image(doc: _Document) -> str:
    image = doc.value((*_AT, "image"))
    if not _scalar(image) or (image not in (None, "") and not _IMAGE.fullmatch(_as_text(image))):
        raise doc.error(
            (*_AT, "image"),
            f"image {_quoted(image)} is not an image reference such as postgres:15",
            hint="set POSTGRES_IMAGE (environment or .env) to an image, e.g. postgres:15",
        )
    return _as_text(image)


def _environment(doc: _Document, lookup: Lookup) -> dict[str, str]:
    """The service's environment. A key without a value (``- KEY`` in the list form, ``KEY:``
    in the mapping form) takes its value from the environment or ``.env``, and is left out
    when neither sets it, as Compose does."""
    environment = doc.value((*_AT, "environment")) or {}
    if isinstance(environment, list):
        pairs = {}
        for i, item in enumerate(environment):
            if not _scalar(item) or item is None:
                raise doc.error(
                    (*_AT, "environment", i), f"environment entry {_quoted(item)} is not KEY=VALUE"
                )
            key, sep, value = _as_text(item).partition("=")
            pairs[key] = value if sep else None
        environment = pairs
    if not isinstance(environment, dict):
        raise doc.error((*_AT, "environment"), "`environment:` is neither a mapping nor a list of KEY=VALUE")
    result = {}
    for key, value in environment.items():
        if not _scalar(value):
            raise doc.error((*_AT, "environment", key), f"the environment value of {key} is not a string")
        if value is None:
            found = lookup(str(key)).value
            if found is not None:
                result[str(key)] = found
            continue
        result[str(key)] = _as_text(value)
    return result


def _volume_names(doc: _Document, mounts: tuple[Mount, ...], project_name: str) -> dict[str, str]:
    declared = doc.value(("volumes",)) or {}
    if not isinstance(declared, dict):
        raise doc.error(("volumes",), "top-level `volumes:` is not a mapping")
    names = {}
    for mount in (m for m in mounts if m.is_volume):
        if mount.source not in declared:
            raise doc.error(
                (*_AT, "volumes"),
                f"volume {_quoted(mount.source)} is not declared under top-level `volumes:`",
                hint=f"declare it (volumes: {{{excerpt(mount.source, 80)}: }}), "
                "or mount a path starting with ./",
            )
        options = declared[mount.source] or {}
        if not isinstance(options, dict) or not _scalar(options.get("name")):
            raise doc.error(
                ("volumes", mount.source), f"volume {_quoted(mount.source)} is not a mapping of options"
            )
        names[mount.source] = _as_text(options.get("name")) or f"{project_name}_{mount.source}"
    return names


def _healthcheck(doc: _Document) -> dict:
    at = (*_AT, "healthcheck")
    check = doc.value(at) or {}
    if not isinstance(check, dict):
        raise doc.error(at, "`healthcheck:` is not a mapping")
    test = check.get("test")
    if test is not None and not (
        isinstance(test, str) or (isinstance(test, list) and all(map(_scalar, test)))
    ):
        raise doc.error((*at, "test"), "the healthcheck test is neither a string nor a list")
    for key in ("interval", "timeout", "start_period", "start_interval"):
        value = check.get(key)
        if value is not None and not (
            (isinstance(value, int | float) and not isinstance(value, bool))
            or _DURATION.fullmatch(_as_text(value).strip())
        ):
            raise doc.error(
                (*at, key), f"healthcheck {key} {_quoted(value)} is not a duration such as 1s or 1m30s"
            )
    retries = check.get("retries")
    if retries is not None and not (_whole_number(retries) and retries >= 0):
        raise doc.error((*at, "retries"), f"healthcheck retries {_quoted(retries)} is not a whole number")
    return check


def _command(doc: _Document) -> tuple[str, ...] | None:
    command = doc.value((*_AT, "command"))
    if isinstance(command, str):
        try:
            command = shlex.split(command)
        except ValueError as exc:
            raise doc.error((*_AT, "command"), f"command {_quoted(command)}: {exc}") from None
    if command is not None and not (isinstance(command, list) and all(map(_scalar, command))):
        raise doc.error((*_AT, "command"), "`command:` is neither a string nor a list of arguments")
    return tuple(map(_as_text, command)) if command else None


def _check_shm_size(doc: _Document) -> None:
    size = doc.value((*_AT, "shm_size"))
    if size is not None and not (_whole_number(size) or (isinstance(size, str) and _BYTES.fullmatch(size))):
        raise doc.error((*_AT, "shm_size"), f"shm_size {_quoted(size)} is not a size such as 256m or 1gb")


def load_service(
    project_dir: Path, *, project_name: str | None = None, environ: Mapping[str, str] | None = None
) -> PostgresService:
    compose_file = project_dir / COMPOSE_FILENAME
    restore = f"restore {COMPOSE_FILENAME} (git checkout -- {COMPOSE_FILENAME})"
    text = read_text(compose_file, COMPOSE_FILENAME, hint=restore)
    if text is None:
        raise ComposeError(f"{compose_file}: missing", hint=restore)
    environ = os.environ if environ is None else environ
    dotenv = read_dotenv_bindings(project_dir / DOTENV_FILENAME, environ)

    def lookup(name: str) -> Variable:
        if name in environ:
            return Variable(name, environ[name], "the environment")
        return dotenv.get(name) or Variable(name, None, "")

    doc = _load_document(text.removeprefix("\ufeff"), lookup)
    service = _service(doc, restore)
    name = _project_name(doc, project_name or lookup("COMPOSE_PROJECT_NAME").value, project_dir)
    mounts = tuple(_parse_mount(doc, (*_AT, "volumes", i), v) for i, v in enumerate(_entries(doc, "volumes")))
    ports = [_parse_port(doc, (*_AT, "ports", i), p) for i, p in enumerate(_entries(doc, "ports"))]
    _check_shm_size(doc)
    return PostgresService(
        project_dir=project_dir,
        project_name=name,
        compose_file=compose_file,
        image=_image(doc),
        environment=_environment(doc, lookup),
        mounts=mounts,
        ports=tuple(p for p in ports if p is not None),
        healthcheck=_healthcheck(doc),
        command=_command(doc),
        volume_names=_volume_names(doc, mounts, name),
        raw=service,
    )
