"""Which migration files a database holds, without a state table.

The spec forbids a migrations table, so the answer comes from the schema itself: what
each file creates (``leaddb.objects``, from its statements) is looked up in a snapshot of
the live catalog (catalog queries only: fast on a server with data, and a read-only role
will do). Each file is

- ``applied``: every object it creates is there, defined as expected;
- ``pending``: none of them is there;
- ``partial``: some are missing (they are listed);
- ``drifted``: all are there, some defined differently (each named, with how);

and objects in the live schema that no file creates are listed as ``extra``. "Defined as
expected" is held against a reference snapshot: the committed, normalised
``api/db/schema.snapshot.json`` (``db.drift`` keeps it honest), or, with ``detail``, the
migrations applied to a scratch database on the same server.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from leaddb import effects
from leaddb.catalog import Snapshot
from leaddb.drift import Difference, owner_table
from leaddb.effects import TABLE_PARTS, FileEffects
from leaddb.errors import MigrationsPending, SchemaDrift
from leaddb.migrations import Migration

APPLIED, PENDING, PARTIAL, DRIFTED, UNKNOWN = "applied", "pending", "partial", "drifted", "unverifiable"


@dataclass
class FileStatus:
    file: str
    state: str
    expected: int  # objects this file creates (or drops) that the catalog can show
    found: int  # of those, how many are as the file leaves them (there, or gone when it drops them)
    missing: list[str] = field(default_factory=list)
    differs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Extra:
    kind: str
    name: str
    definition: str | None = None


@dataclass
class Report:
    reference: str
    files: list[FileStatus]
    extra: list[Extra]
    notes: list[str] = field(default_factory=list)

    def count(self, *states: str) -> int:
        return sum(1 for f in self.files if f.state in states)

    @property
    def drifted(self) -> bool:
        return bool(self.count(DRIFTED) or self.extra or any(f.differs for f in self.files))

    @property
    def pending(self) -> bool:
        return bool(self.count(PENDING, PARTIAL))

    @property
    def exit_code(self) -> int:
        if self.drifted:
            return SchemaDrift.exit_code
        return MigrationsPending.exit_code if self.pending else 0

    def to_json(self) -> str:
        document = {
            "reference": self.reference,
            "exit_code": self.exit_code,
            "files": [asdict(f) for f in self.files],
            "extra": [asdict(e) for e in self.extra],
            "notes": self.notes,
        }
        return json.dumps(document, indent=2) + "\n"

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8", newline="\n")

    def summary(self) -> str:
        parts = [f"{self.count(state)} {state}" for state in (APPLIED, PENDING, PARTIAL, DRIFTED, UNKNOWN)]
        parts = [p for p in parts if not p.startswith("0 ")]
        extra = f"; {len(self.extra)} extra object(s)" if self.extra else ""
        return f"{len(self.files)} migration files: {', '.join(parts)}{extra}"

    def raise_for_state(self) -> None:
        """SCHEMA_DRIFT when anything differs or is extra, else MIGRATIONS_PENDING when a file
        is pending or partial; nothing when every file is applied."""
        if self.drifted:
            named = [f"{f.file} {f.state}" for f in self.files if f.differs]
            named += [f"{e.kind} {e.name} (extra)" for e in self.extra]
            raise SchemaDrift(
                f"the live schema differs from the migrations: {', '.join(named)}",
                hint="write a migration that brings these objects back to what the files define "
                "(the table above says how each differs), or drop what no file creates; "
                "`invoke db.drift` holds the whole schema against the spec",
            )
        if self.pending:
            named = [f"{f.file} ({f.state})" for f in self.files if f.state in (PENDING, PARTIAL)]
            raise MigrationsPending(
                f"not every migration is on this database: {', '.join(named)}",
                hint="apply them with `invoke db.apply` (every file is idempotent); a partial file "
                "lost objects after it was applied: the table above names them",
            )


def _label(key: tuple[str, str]) -> str:
    return f"{key[0]} {key[1]}"


def _expectations(files: list[FileEffects]):
    """Which file the final state of each object comes from.

    ``creator``: object -> the file whose statements create it (and that a later file did not
    drop); ``dropper``: object -> the file that drops it last; ``definer``: object -> the last
    file that created or altered it (its definition is as that file leaves it)."""
    creator: dict[tuple[str, str], int] = {}
    dropper: dict[tuple[str, str], int] = {}
    definer: dict[tuple[str, str], int] = {}
    tables: dict[tuple[str, str], str | None] = {}
    opaque: dict[str, int] = {}
    for index, file in enumerate(files):
        for effect in file.effects:
            key = effect.key
            if effect.action == "create":
                creator[key] = index
                definer[key] = index
                tables[key] = effect.table
                dropper.pop(key, None)
                if effect.opaque:
                    opaque[effect.name] = index
            elif effect.action == "drop":
                gone = [key]
                if effect.kind == "table":
                    gone += [k for k, table in tables.items() if table == effect.name]
                    opaque.pop(effect.name, None)
                for k in gone:
                    creator.pop(k, None)
                    definer.pop(k, None)
                    dropper[k] = index
            elif key in creator:
                definer[key] = index
    return creator, dropper, definer, tables, opaque


def _resolve_functions(keys, live: Snapshot, reference: Snapshot) -> dict:
    """A file names a function by name only (``name(``): match it to the signatures there are."""
    known = {k for k in (*live.objects, *reference.objects) if k[0] == "function"}
    resolved = {}
    for key, value in keys.items():
        if key[0] == "function" and key[1].endswith("("):
            matches = [k for k in known if k[1].startswith(key[1])]
            for match in matches or [(key[0], key[1] + "…)")]:
                resolved[match] = value
        else:
            resolved[key] = value
    return resolved


def check(migrations: list[Migration], live: Snapshot, reference: Snapshot, *, reference_name: str) -> Report:
    files = effects.of(migrations)  # leaddb.objects, or its answer on the same files cached
    creator, dropper, definer, tables, opaque = _expectations(files)
    creator = _resolve_functions(creator, live, reference)
    definer = _resolve_functions(definer, live, reference)
    dropper = _resolve_functions(dropper, live, reference)
    # the parts of a table whose statement does not spell them out come from the reference
    for table, index in opaque.items():
        for key, obj in reference.objects.items():
            if key[0] in TABLE_PARTS and owner_table(obj) == table and key not in creator:
                creator[key] = definer[key] = index
                tables[key] = table

    statuses = []
    for index, file in enumerate(files):
        created = sorted(k for k, i in creator.items() if i == index)
        dropped = sorted(k for k, i in dropper.items() if i == index)
        altered = sorted(k for k, i in definer.items() if i == index and creator.get(k) != index)
        present = [k for k in created if k in live.objects]
        missing = [k for k in created if k not in live.objects]
        still_there = [k for k in dropped if k in live.objects]
        missing_tables = {k[1] for k in missing if k[0] == "table"}
        shown_missing = [_label(k) for k in missing if tables.get(k) not in missing_tables]
        shown_missing += [f"{_label(k)} (this file drops it; it is still there)" for k in still_there]
        differs = []
        # a definition is held against the reference in the row of the file that last defines it
        defined_here = [k for k in present if definer.get(k) == index]
        for key in defined_here + [k for k in altered if k in live.objects]:
            want = reference.objects.get(key)
            have = live.objects[key]
            if want is not None and have != want:
                differs.append(Difference(key[0], key[1], "changed", have, want).describe("expected"))
        expected = len(created) + len(dropped)
        found = len(present) + len(dropped) - len(still_there)
        notes = list(file.notes)
        if expected == 0:
            if altered and differs:
                state = PENDING
                notes.append(
                    "this file only alters objects of earlier files, and they are not as it leaves "
                    "them: not applied, or changed since"
                )
                differs_for_exit: list[str] = []
                shown_missing += [f"{d} (as this file leaves it)" for d in differs]
            else:
                state = APPLIED if altered else UNKNOWN
                differs_for_exit = differs
                if not altered:
                    notes.append("creates no object the catalog shows; cannot be told without a state table")
        else:
            differs_for_exit = differs
            if found == 0:
                state = PENDING
            elif found < expected:
                state = PARTIAL
            else:
                state = DRIFTED if differs else APPLIED
        statuses.append(
            FileStatus(
                file.migration.name,
                state,
                expected,
                found,
                shown_missing if state != PENDING or expected == 0 else [],
                differs_for_exit,
                notes,
            )
        )

    accounted = set(creator) | set(dropper)
    extra_keys = [k for k in live.objects if k not in accounted]
    extra_tables = {k[1] for k in extra_keys if k[0] == "table"}
    extra = [
        Extra(k[0], k[1], live.objects[k].get("definition"))
        for k in sorted(extra_keys)
        if not (k[0] in TABLE_PARTS and owner_table(live.objects[k]) in extra_tables)
    ]
    return Report(reference_name, statuses, extra, _reference_notes(creator, reference, reference_name))


def _reference_notes(creator: dict, reference: Snapshot, reference_name: str) -> list[str]:
    unknown = sorted(k for k in creator if k not in reference.objects and not k[1].endswith("…)"))
    unclaimed = sorted(k for k in reference.objects if k not in creator)
    if not unknown and not unclaimed:
        return []
    sample = ", ".join(_label(k) for k in (unknown + unclaimed)[:5])
    return [
        f"{reference_name} does not match the migration files ({len(unknown)} object(s) it lacks, "
        f"{len(unclaimed)} no file creates, e.g. {sample}): those objects were checked for presence "
        "only. Rebuild it: `invoke db.reset`, then `invoke db.dump`, and commit it"
    ]


def elsewhere_note(schema: str, tables: list[str]) -> str:
    """What to say when tables the files create sit in another schema than ``public``."""
    shown = ", ".join(tables[:5]) + (", …" if len(tables) > 5 else "")
    return (
        f"schema {schema!r} holds {len(tables)} of the tables the migrations create ({shown}): applied "
        "there under another search_path (a role's or a database's setting)? These tasks apply and read "
        "schema public only, whatever the search_path; move or drop those tables, then `invoke db.apply`"
    )
