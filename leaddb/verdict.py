"""The migrations, read and judged: every file held to every rule before anything runs.

One direction: the spec is read (``leaddb.spec``), the directory it and the compose mount
declare is resolved and read (``leaddb.migrations``: the one room that lists and reads the
files, with the rules "naming" and "text"), then the rest of the rules judge what was read
(``leaddb.rules``, with pglast). Nothing below calls back up.

The judgement depends only on what was read and on the code: the declared directory, the
spec's bytes (its blocks, the objects it lets be destroyed), every name the directory holds
and every file's bytes, and :func:`leaddb.cache.code_version`. A passing verdict is cached per
user under a key of all of them, with what the tasks need of it (each file's statements and
whether it is one transaction), so a command on unchanged files loads neither pglast nor the
rules. Any change to any of them is another key: judged anew. Failing verdicts are never
cached: they are judged anew each time, and name every violation.
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

from leaddb import cache, migrations
from leaddb.migrations import Migration, Statement
from leaddb.spec import SPEC_FILENAME, Spec
from leaddb.violations import refuse

CACHE_PREFIX = "verdict"
CACHE_FORMAT = 1
CACHE_KEEP = 16


def load(project_dir: Path) -> list[Migration]:
    """The declared directory's migrations, every file held to every rule of the spec's
    "Migrations: directory and tooling" first: nothing runs unless all of them pass."""
    spec = Spec.load(project_dir / SPEC_FILENAME)
    directory = migrations.resolve_directory(project_dir, spec)  # MIGRATION_PATH_UNSPECIFIED before any rule
    reading = migrations.read(directory, project_dir.resolve())
    declared = spec.declarations[0].path.as_posix()
    key = cache_key(spec, declared, reading) if not reading.violations else None
    value = cache.lookup(CACHE_PREFIX, key) if key else None
    if value is not None and _restore(reading.migrations, value):
        return reading.migrations
    judged(spec, directory, declared, reading)
    if key:
        cache.store(CACHE_PREFIX, key, _value_of(reading.migrations), CACHE_KEEP)
    return reading.migrations


def judged(spec: Spec, directory: Path, declared: str, reading: migrations.Reading) -> None:
    """Every rule over what was read: raises ``RulesBroken`` naming all the violations."""
    from leaddb import lint, rules  # pglast: only when the files are judged anew

    violations = list(reading.violations)
    violations += rules.check_printed(
        reading.migrations,
        spec.blocks_of("migration"),
        declared,
        partial(migrations.present, directory),
    )
    violations += rules.check_files(reading.migrations, declared, lint.allowed_objects(spec))
    refuse(violations)
    for migration in reading.migrations:
        migration.single_transaction  # noqa: B018 - judged now, with the parser at hand, and cached


def cache_key(spec: Spec, declared: str, reading: migrations.Reading) -> dict | None:
    """Everything the verdict depends on; None when the code's version cannot be read."""
    code = cache.code_version()
    if code is None:
        return None
    files = hashlib.sha256()
    for name in reading.names:  # every entry, read or not (a hidden one can be a printed block's name)
        files.update(b"\0name\0" + name.encode("utf-8", "surrogateescape"))
    for migration in reading.migrations:
        files.update(b"\0file\0" + migration.name.encode() + b"\0" + migration.text.encode())
    return {
        "format": CACHE_FORMAT,
        "code": code,
        "spec": hashlib.sha256(spec.text.encode()).hexdigest(),
        "directory": declared,
        "files": files.hexdigest(),
    }


def _value_of(found: list[Migration]) -> list:
    """What the tasks need of each file: its name, whether it is one transaction, and its
    statements as (start, end, line, end line), offsets into its text."""
    value = []
    for migration in found:
        spans, at = [], 0
        for statement in migration.statements:
            start = migration.text.index(statement.sql, at)
            at = start + len(statement.sql)
            spans.append([start, at, statement.line, statement.end_line])
        value.append([migration.name, migration.single_transaction, spans])
    return value


def _restore(found: list[Migration], value) -> bool:
    """Give each file its statements and transaction from a cached value; False (and nothing
    given) when the value is not of the shape :func:`_value_of` writes for these files."""
    try:
        if len(value) != len(found):
            return False
        restored = []
        for migration, (name, single, spans) in zip(found, value, strict=True):
            if name != migration.name or type(single) is not bool:
                return False
            statements = []
            for start, end, line, end_line in spans:
                if not all(type(n) is int for n in (start, end, line, end_line)):
                    return False
                if not (0 <= start <= end <= len(migration.text) and 1 <= line <= end_line):
                    return False
                statements.append(Statement(migration.text[start:end], line, end_line))
            restored.append((migration, tuple(statements), single))
    except (TypeError, ValueError):  # not a list of three-item lists
        return False
    for migration, statements, single in restored:
        migration.__dict__.update(statements=statements, single_transaction=single)
    return True
