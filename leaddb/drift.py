"""The live catalog held against the spec, object by object.

The expected side is not parsed from the spec's text: the spec's migration blocks
are applied to a scratch database on the same server and snapshotted, so
PostgreSQL normalises both sides and whitespace, casts or default spelling never
count as drift. The diff is key-set arithmetic plus equality.

Building that snapshot (a database created, the spec applied, the catalog read, the
database dropped) is most of a drift check, and its result depends only on the spec's SQL,
the server and the catalog code: it is cached per user (``leaddb.cache``) under a key of
all three, and rebuilt whenever any of them changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from leaddb import cache, catalog, janitor
from leaddb.catalog import CatalogObject, Snapshot
from leaddb.errors import MigrationError, SpecError
from leaddb.migrations import Migration
from leaddb.spec import SPEC_FILENAME, Spec

if TYPE_CHECKING:
    from leaddb.backends.base import Backend

# objects that belong to a table: reported with the table when the table itself differs
_TABLE_PARTS = ("column", "constraint", "index", "sequence", "trigger")


@dataclass(frozen=True)
class Difference:
    kind: str
    name: str
    change: str  # "missing" (in the spec, not live), "extra" (live, not in the spec), "changed"
    live: CatalogObject | None = None
    spec: CatalogObject | None = None

    def describe(self, reference: str = "spec") -> str:
        """One line per object; ``reference`` names what the live side is held against."""
        if self.change == "missing":
            return f"{self.kind} {self.name}: missing{_definition(self.spec, reference)}"
        if self.change == "extra":
            return f"{self.kind} {self.name}: not in the {reference}{_definition(self.live, 'live')}"
        live, spec = dict(self.live.properties), dict(self.spec.properties)
        parts = []
        for key in sorted(set(live) | set(spec)):
            if live.get(key) == spec.get(key):
                continue
            if key == "definition":
                parts.append(
                    f"definition differs\n      live: {live.get(key)}\n      {reference}: {spec.get(key)}"
                )
            else:
                parts.append(f"{key} {_show(live.get(key))}, {reference} {_show(spec.get(key))}")
        return f"{self.kind} {self.name}: " + "; ".join(parts)


def _show(value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(map(str, value)) + ")"
    return "none" if value is None or value == "" else str(value)


def _definition(obj: CatalogObject | None, side: str) -> str:
    definition = obj.get("definition") if obj else None
    return f" ({side}: {definition})" if definition else ""


def owner_table(obj: CatalogObject) -> str | None:
    if obj.kind in ("column", "constraint", "trigger"):
        return obj.name.split(".", 1)[0]
    if obj.kind == "index":
        return obj.get("table_name")
    if obj.kind == "sequence":
        return obj.get("owned_by_table")
    return None


def diff(live: Snapshot, spec: Snapshot) -> list[Difference]:
    differences = []
    for key in sorted(set(live.objects) | set(spec.objects)):
        have, want = live.objects.get(key), spec.objects.get(key)
        if have == want:
            continue
        change = "missing" if have is None else "extra" if want is None else "changed"
        differences.append(Difference(key[0], key[1], change, have, want))
    # a missing or extra table carries its columns, constraints and indexes with it: name the table only
    whole_tables = {(d.name, d.change) for d in differences if d.kind == "table" and d.change != "changed"}
    return [
        d
        for d in differences
        if not (d.kind in _TABLE_PARTS and (owner_table(d.live or d.spec), d.change) in whole_tables)
    ]


def spec_migrations(spec: Spec) -> list[Migration]:
    """The spec's migration blocks as migrations, in the order the spec prints them."""
    blocks = spec.blocks_of("migration")
    if not blocks:
        raise SpecError(
            f"{SPEC_FILENAME}: prints no migration block (```sql whose first line is -- migration: FILE)",
            hint="print every migration's SQL in the spec",
        )
    return [
        Migration(Path(f"{SPEC_FILENAME}:{block.line} ({block.name})"), n, block.sql)
        for n, block in enumerate(blocks, 1)
    ]


def expected_snapshot(spec: Spec, backend: Backend) -> Snapshot:
    """Apply the spec's SQL to a scratch database on the same server and snapshot it."""
    with janitor.scratch_database(backend.conninfo("postgres"), purpose="spec") as scratch:
        try:
            backend.apply(spec_migrations(spec), dbname=scratch)
        except MigrationError as exc:
            raise SpecError(
                f"the spec's own SQL does not apply: {exc.detail}", hint="fix the spec block"
            ) from None
        return catalog.snapshot_of(backend.conninfo(scratch))


# Bump when the layout of a cache entry or the meaning of its key changes.
CACHE_FORMAT = 1
CACHE_ENTRIES = "drift-expected-*.json"
CACHE_KEEP = 16  # entries kept: one per spec version and server, the newest first

# What the server puts into the expected snapshot besides the spec: its build (PostgreSQL's
# own spelling of types, defaults and definitions can change with it), what a new database
# inherits from template0, and the settings that place objects or spell constants.
SERVER_KEY = """
SELECT version() AS version,
       current_setting('server_version_num') AS server_version_num,
       (SELECT row(datcollate, datctype, pg_encoding_to_char(encoding))::text
        FROM pg_database WHERE datname = 'template0') AS template0,
       current_setting('search_path') AS search_path,
       current_setting('TimeZone') AS timezone,
       current_setting('DateStyle') AS datestyle,
       current_setting('IntervalStyle') AS intervalstyle,
       current_setting('extra_float_digits') AS extra_float_digits,
       current_setting('lc_monetary') AS lc_monetary,
       current_setting('lc_numeric') AS lc_numeric,
       current_setting('standard_conforming_strings') AS standard_conforming_strings
"""


@dataclass(frozen=True)
class Expected:
    snapshot: Snapshot
    source: str  # how it was obtained, for the task's output


def spec_key(spec: Spec) -> str:
    """The spec's migration SQL, block by block, as a digest: what the scratch database gets."""
    digest = hashlib.sha256()
    for block in spec.blocks_of("migration"):
        digest.update(f"{block.name}\0{block.sql}\0".encode())
    return digest.hexdigest()


def server_key(maintenance_conninfo: str) -> dict[str, str]:
    with janitor.maintenance(maintenance_conninfo) as conn:
        cursor = conn.execute(SERVER_KEY)
        names = [column.name for column in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


def cache_key(spec: Spec, server: dict[str, str]) -> dict | None:
    code = catalog.fingerprint()
    if code is None:
        return None
    return {"format": CACHE_FORMAT, "spec": spec_key(spec), "catalog": code, "server": server}


def _cached(text: str, key: dict) -> Snapshot | None:
    """The snapshot of a cache entry written under ``key``; None for anything else."""
    try:
        data = json.loads(text)
        if data["key"] != key:
            return None
        return Snapshot.from_data(data["snapshot"])
    except (ValueError, KeyError, TypeError, AttributeError):  # not JSON, or not an entry's shape
        return None


def cached_expected_snapshot(spec: Spec, backend: Backend) -> Expected:
    """:func:`expected_snapshot`, from the per-user cache when the spec's SQL, the server and
    the catalog code are what they were when it was built; built and cached otherwise."""
    try:
        directory = cache.directory()
    except cache.Unavailable as exc:
        return Expected(expected_snapshot(spec, backend), f"built; not cached: {exc}")
    try:
        server = server_key(backend.conninfo("postgres"))
    except psycopg.Error:  # building reports why the server cannot be used
        return Expected(expected_snapshot(spec, backend), "built")
    key = cache_key(spec, server)
    if key is None:
        return Expected(expected_snapshot(spec, backend), "built; not cached: the catalog code is unreadable")
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    path = directory / CACHE_ENTRIES.replace("*", name)
    text = cache.read(path)
    snapshot = _cached(text, key) if text is not None else None
    if snapshot is not None:
        return Expected(snapshot, "from the cache")
    snapshot = expected_snapshot(spec, backend)
    text = json.dumps({"key": key, "snapshot": snapshot.to_data()}, indent=1, sort_keys=True, default=str)
    if _cached(text, key) != snapshot:  # a value JSON cannot carry: never cache a different answer
        return Expected(snapshot, "built; not cached: the snapshot does not survive JSON")
    written = cache.write(path, text + "\n")
    cache.prune(directory, CACHE_ENTRIES, CACHE_KEEP)
    return Expected(
        snapshot, "built and cached" if written else f"built; not cached: cannot write in {directory}"
    )


def coverage(live: Snapshot, spec: Snapshot) -> dict[str, tuple[int, int]]:
    """Per kind: (objects present and equal live, objects the spec specifies)."""
    result = {}
    for kind in catalog.KINDS:
        wanted = spec.of_kind(kind)
        if wanted or live.of_kind(kind):
            present = sum(1 for o in wanted if live.get(kind, o.name) == o)
            result[kind] = (present, len(wanted))
    return result
