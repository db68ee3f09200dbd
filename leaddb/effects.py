"""What each migration file does to the schema, as ``leaddb.status`` reads it: the shape of
``leaddb.objects``' answer, and that answer cached by content.

The effects of the files depend only on their names and texts, in order (the names
PostgreSQL picks depend on what came before), and on the code that reads them: they are
cached per user (``leaddb.cache``) under a key of both, so `invoke db.status` on unchanged
files does not load pglast. Any change of any file, or of the code, is another key: read anew.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from leaddb import cache
from leaddb.migrations import Migration

# kinds whose objects belong to a table (their keys or owners name it)
TABLE_PARTS = ("column", "constraint", "index", "sequence", "trigger")

CACHE_PREFIX = "effects"
CACHE_FORMAT = 1
CACHE_KEEP = 16


@dataclass(frozen=True)
class Effect:
    """One thing a statement does to one catalog object."""

    action: str  # "create", "drop" or "alter"
    kind: str  # a catalog kind: table, column, constraint, index, sequence, enum, ...
    name: str  # the catalog signature; for a function, its name followed by "("
    line: int  # line in the file of the statement that does it
    table: str | None = None  # the table a part belongs to
    opaque: bool = False  # a table whose columns the statement does not spell out (LIKE, AS, OF, ...)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)


@dataclass
class FileEffects:
    migration: Migration
    effects: list[Effect] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # statements whose effect is not modelled


def of(migrations: Sequence[Migration]) -> list[FileEffects]:
    """``leaddb.objects.read(migrations)``, from the cache when the same files were read by the
    same code before."""
    key = cache_key(migrations)
    value = cache.lookup(CACHE_PREFIX, key) if key else None
    found = _restore(migrations, value) if value is not None else None
    if found is not None:
        return found
    from leaddb import objects  # pglast: only when the files are read anew

    found = objects.read(migrations)
    if key:
        cache.store(CACHE_PREFIX, key, _value_of(found), CACHE_KEEP)
    return found


def cache_key(migrations: Sequence[Migration]) -> dict | None:
    code = cache.code_version()
    if code is None:
        return None
    files = hashlib.sha256()
    for migration in migrations:
        files.update(b"\0file\0" + migration.name.encode() + b"\0" + migration.text.encode())
    return {"format": CACHE_FORMAT, "code": code, "files": files.hexdigest()}


def _value_of(found: list[FileEffects]) -> list:
    return [
        [
            file.migration.name,
            [[e.action, e.kind, e.name, e.line, e.table, e.opaque] for e in file.effects],
            list(file.notes),
        ]
        for file in found
    ]


def _restore(migrations: Sequence[Migration], value) -> list[FileEffects] | None:
    """The effects a cached value holds for these files; None when it is not of the shape
    :func:`_value_of` writes for them (a miss: read anew)."""
    try:
        if len(value) != len(migrations):
            return None
        found = []
        for migration, (name, effects, notes) in zip(migrations, value, strict=True):
            if name != migration.name or not all(isinstance(n, str) for n in notes):
                return None
            restored = []
            for action, kind, what, line, table, opaque in effects:
                texts = (action, kind, what)
                if (
                    not all(isinstance(t, str) for t in texts)
                    or type(line) is not int
                    or type(opaque) is not bool
                ):
                    return None
                if table is not None and not isinstance(table, str):
                    return None
                restored.append(Effect(action, kind, what, line, table, opaque))
            found.append(FileEffects(migration, restored, list(notes)))
    except (TypeError, ValueError):  # not a list of the right lists
        return None
    return found
