"""db.status without a server (issue 17, part 7): live snapshots made from the committed schema
dump, or from what synthetic files create, changed by hand; the mutation session runs these
against ``leaddb/status.py``. tests/test_status.py holds the same answers against a live server."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from leaddb import objects, verdict
from leaddb import status as schema_status
from leaddb.catalog import CatalogObject, Snapshot
from leaddb.drift import owner_table
from leaddb.errors import EXIT_MIGRATIONS_PENDING, EXIT_SCHEMA_DRIFT, MigrationsPending, SchemaDrift
from leaddb.migrations import Migration

PROJECT = Path(__file__).resolve().parents[2]
DUMP = "api/db/schema.snapshot.json"


@pytest.fixture(scope="module")
def files() -> list[Migration]:
    return verdict.load(PROJECT)


@pytest.fixture(scope="module")
def reference() -> Snapshot:
    return Snapshot.load(PROJECT / DUMP)


def check(files, live: Snapshot, reference: Snapshot, name: str = DUMP) -> schema_status.Report:
    return schema_status.check(files, live, reference, reference_name=name)


def states(report: schema_status.Report) -> dict[str, str]:
    return {f.file: f.state for f in report.files}


def row(report: schema_status.Report, file: str) -> schema_status.FileStatus:
    return next(f for f in report.files if f.file == file)


def without_table(snapshot: Snapshot, table: str) -> Snapshot:
    """As after ``DROP TABLE table``: the table and every part of it gone."""
    return Snapshot(
        {
            key: obj
            for key, obj in snapshot.objects.items()
            if key != ("table", table) and not (key[0] in objects.TABLE_PARTS and owner_table(obj) == table)
        }
    )


def changed(snapshot: Snapshot, key: tuple[str, str], **properties) -> Snapshot:
    obj = snapshot.objects[key]
    merged = tuple(sorted({**dict(obj.properties), **properties}.items()))
    return Snapshot({**snapshot.objects, key: replace(obj, properties=merged)})


def added(snapshot: Snapshot, kind: str, signature: str, /, **properties) -> Snapshot:
    obj = CatalogObject(kind, signature, tuple(sorted(properties.items())))
    return Snapshot({**snapshot.objects, (kind, signature): obj})


# -- the project's migrations against the committed dump ----------------------------------


def test_the_dump_itself_shows_every_file_applied(files, reference):
    report = check(files, reference, reference)
    assert states(report) == {m.name: "applied" for m in files}
    assert all(f.found == f.expected > 0 and not f.missing and not f.differs for f in report.files)
    assert report.extra == [] and report.notes == []
    assert report.exit_code == 0
    assert report.summary() == "7 migration files: 7 applied"
    report.raise_for_state()  # nothing to say


def test_an_empty_database_shows_every_file_pending(files, reference):
    report = check(files, Snapshot({}), reference)
    assert states(report) == {m.name: "pending" for m in files}
    assert all(f.found == 0 and f.expected > 0 and f.missing == [] for f in report.files)
    assert report.exit_code == EXIT_MIGRATIONS_PENDING == 6
    assert report.summary() == "7 migration files: 7 pending"
    with pytest.raises(MigrationsPending) as caught:
        report.raise_for_state()
    assert str(caught.value) == (
        "MIGRATIONS_PENDING: not every migration is on this database: "
        + ", ".join(f"{m.name} (pending)" for m in files)
        + "\n  next step: apply them with `invoke db.apply` (every file is idempotent); a partial file "
        "lost objects after it was applied: the table above names them"
    )


def test_a_dropped_table_makes_its_file_partial_naming_the_table_once(files, reference):
    report = check(files, without_table(reference, "buyer_service_areas"), reference)
    assert {f: s for f, s in states(report).items() if s != "applied"} == {
        "0005_buyer_relations.sql": "partial"
    }
    partial = row(report, "0005_buyer_relations.sql")
    assert partial.missing == ["table buyer_service_areas"]  # not its columns, indexes, sequence
    assert (
        partial.expected - partial.found == 15
    )  # the table, 5 columns, 5 constraints, 3 indexes, 1 sequence
    assert partial.differs == []
    assert report.exit_code == EXIT_MIGRATIONS_PENDING
    assert report.summary() == "7 migration files: 6 applied, 1 partial"
    with pytest.raises(MigrationsPending, match=r"database: 0005_buyer_relations.sql \(partial\)\n"):
        report.raise_for_state()


def test_a_dropped_index_alone_is_named(files, reference):
    live = Snapshot(
        {k: v for k, v in reference.objects.items() if k != ("index", "leads_status_received_at_idx")}
    )
    partial = row(check(files, live, reference), "0006_leads.sql")
    assert (partial.state, partial.missing) == ("partial", ["index leads_status_received_at_idx"])
    assert partial.expected - partial.found == 1


def test_a_partial_file_whose_remaining_objects_drifted_is_drift_and_lists_it(files, reference):
    """Issue 17's escaped bug: this exited 6 and the drift listing was lost."""
    live = without_table(reference, "buyer_service_areas")
    live = changed(live, ("column", "buyer_offers.priority"), default="5")
    report = check(files, live, reference)
    partial = row(report, "0005_buyer_relations.sql")
    assert partial.state == "partial"
    assert partial.missing == ["table buyer_service_areas"]
    assert partial.differs == ["column buyer_offers.priority: default 5, expected 100"]
    assert report.drifted and report.pending
    assert report.exit_code == EXIT_SCHEMA_DRIFT == 3
    written = json.loads(report.to_json())
    assert written["exit_code"] == 3
    assert written["files"][4]["differs"] == ["column buyer_offers.priority: default 5, expected 100"]
    with pytest.raises(SchemaDrift) as caught:
        report.raise_for_state()
    assert str(caught.value).startswith(
        "SCHEMA_DRIFT: the live schema differs from the migrations: 0005_buyer_relations.sql partial\n"
    )


def test_a_changed_default_makes_its_file_drifted_saying_how(files, reference):
    live = changed(reference, ("column", "buyers.credit_limit_cents"), default="5")
    report = check(files, live, reference)
    assert {f: s for f, s in states(report).items() if s != "applied"} == {
        "0004_offers_sources_buyers.sql": "drifted"
    }
    drifted = row(report, "0004_offers_sources_buyers.sql")
    assert drifted.differs == ["column buyers.credit_limit_cents: default 5, expected 0"]
    assert drifted.found == drifted.expected and drifted.missing == []
    assert report.exit_code == EXIT_SCHEMA_DRIFT
    assert report.summary() == "7 migration files: 6 applied, 1 drifted"
    with pytest.raises(SchemaDrift) as caught:
        report.raise_for_state()
    assert str(caught.value) == (
        "SCHEMA_DRIFT: the live schema differs from the migrations: 0004_offers_sources_buyers.sql drifted\n"
        "  next step: write a migration that brings these objects back to what the files define (the "
        "table above says how each differs), or drop what no file creates; `invoke db.drift` holds the "
        "whole schema against the spec"
    )


def test_extra_objects_are_listed_a_table_once_with_definitions(files, reference):
    live = added(reference, "table", "audit_log", name="audit_log")
    live = added(live, "column", "audit_log.id", name="id", table_name="audit_log", type="bigint")
    live = added(
        live, "index", "audit_log_pkey", name="audit_log_pkey", table_name="audit_log", definition="d"
    )
    live = added(live, "sequence", "audit_log_id_seq", name="audit_log_id_seq", owned_by_table="audit_log")
    live = added(live, "column", "buyers.nickname", name="nickname", table_name="buyers", type="text")
    live = added(
        live, "index", "leads_email_idx", table_name="leads", definition="CREATE INDEX leads_email_idx"
    )
    report = check(files, live, reference)
    assert [(e.kind, e.name, e.definition) for e in report.extra] == [
        ("column", "buyers.nickname", None),
        ("index", "leads_email_idx", "CREATE INDEX leads_email_idx"),
        ("table", "audit_log", None),
    ]
    assert set(states(report).values()) == {"applied"}
    assert report.drifted and not report.pending
    assert report.exit_code == EXIT_SCHEMA_DRIFT
    assert report.summary() == "7 migration files: 7 applied; 3 extra object(s)"
    with pytest.raises(SchemaDrift) as caught:
        report.raise_for_state()
    assert (
        "differs from the migrations: column buyers.nickname (extra), index leads_email_idx (extra), "
        in str(caught.value)
    )
    assert json.loads(report.to_json())["extra"][1] == {
        "kind": "index",
        "name": "leads_email_idx",
        "definition": "CREATE INDEX leads_email_idx",
    }


def test_drift_outranks_pending(files, reference):
    live = added(without_table(reference, "invoice_line_items"), "table", "scratch", name="scratch")
    report = check(files, live, reference)
    assert states(report)["0007_invoices.sql"] == "partial"
    assert report.exit_code == EXIT_SCHEMA_DRIFT
    with pytest.raises(SchemaDrift, match=r"migrations: table scratch \(extra\)\n"):
        report.raise_for_state()


def test_a_stale_reference_is_said_and_presence_still_checked(files, reference):
    stale = Snapshot({k: v for k, v in reference.objects.items() if k != ("table", "leads")})
    stale = added(stale, "table", "gone_by_now", name="gone_by_now")
    report = check(files, reference, stale, name="ref.json")
    assert set(states(report).values()) == {"applied"}
    assert report.notes == [
        "ref.json does not match the migration files (1 object(s) it lacks, 1 no file creates, e.g. "
        "table leads, table gone_by_now): those objects were checked for presence only. Rebuild it: "
        "`invoke db.reset`, then `invoke db.dump`, and commit it"
    ]
    assert report.exit_code == 0


def test_a_reference_note_names_at_most_five_objects(files, reference):
    stale = Snapshot(
        {k: v for k, v in reference.objects.items() if k[0] != "column" or not k[1].startswith("leads.")}
    )
    (note,) = check(files, reference, stale, name="r").notes
    lacks = sum(1 for k in reference.objects if k[0] == "column" and k[1].startswith("leads."))
    assert note.startswith(
        f"r does not match the migration files ({lacks} object(s) it lacks, 0 no file creates, e.g. "
    )
    assert note.split("e.g. ")[1].split("):")[0].count(", ") == 4


def test_the_report_as_data(files, reference, tmp_path):
    report = check(files, without_table(reference, "buyer_service_areas"), reference)
    path = tmp_path / "deeper" / "still" / "status.json"
    report.save(path)
    report.save(path.with_name("again.json"))  # its directory is there now: no error
    text = path.read_text(encoding="utf-8")
    assert text == report.to_json() and text.endswith("}\n") and "\r" not in text
    data = json.loads(text)
    assert list(data) == ["reference", "exit_code", "files", "extra", "notes"]
    assert (
        data["reference"] == DUMP and data["exit_code"] == 6 and data["extra"] == [] and data["notes"] == []
    )
    assert data["files"][4] == {
        "file": "0005_buyer_relations.sql",
        "state": "partial",
        "expected": partial_expected(files),
        "found": partial_expected(files) - 15,
        "missing": ["table buyer_service_areas"],
        "differs": [],
        "notes": [],
    }
    assert '\n  "reference"' in text  # indented


def partial_expected(files) -> int:
    effects = objects.read(files)[4].effects
    return len({e.key for e in effects if e.action == "create"})


# -- synthetic files: alters, drops, DO blocks, functions, statements without objects -----


def migration(number: int, text: str) -> Migration:
    return Migration(Path(f"{number:04d}_m{number}.sql"), number, text)


def made_by(files: list[Migration], *, resolve: dict[str, str] | None = None) -> Snapshot:
    """A snapshot holding exactly what ``files`` leave (created, less what a later file drops):
    every object with a definition ``v1``; a function under the signature ``resolve`` gives."""
    found: dict[tuple[str, str], CatalogObject] = {}
    for file in objects.read(files):
        for effect in file.effects:
            kind, name = effect.key
            name = (resolve or {}).get(name, name)
            if effect.action == "create":
                props = {"definition": "v1", "table_name": effect.table, "owned_by_table": effect.table}
                found[(kind, name)] = CatalogObject(kind, name, tuple(sorted(props.items())))
            elif effect.action == "drop":
                found.pop((kind, name), None)
                if kind == "table":
                    for key in [
                        k
                        for k, o in found.items()
                        if o.get("table_name") == name or k[1].startswith(name + ".")
                    ]:
                        found.pop(key)
    return Snapshot(found)


def only(snapshot: Snapshot, *keys: tuple[str, str], dropping=()) -> Snapshot:
    return Snapshot({k: v for k, v in snapshot.objects.items() if k not in keys or k in dropping})


SYNTHETIC = [
    migration(1, "CREATE TABLE a (id int PRIMARY KEY, v int DEFAULT 1);\nCREATE TABLE b (id int);"),
    migration(
        2,
        "DO $$ BEGIN EXECUTE 'CREATE TABLE c (id serial PRIMARY KEY)'; "
        "IF true THEN CREATE INDEX ON a (v); END IF; END $$;",
    ),
    migration(3, "ALTER TABLE a ALTER COLUMN v SET DEFAULT 2;"),
    migration(4, "DROP TABLE IF EXISTS b;\nALTER TABLE a ADD COLUMN w int CHECK (w > 0);"),
]


def test_alters_drops_and_do_blocks_are_followed():
    reference = made_by(SYNTHETIC)
    first_two = made_by(SYNTHETIC[:2])
    # the alter of file 3 is not there yet: its object is as file 1 left it
    live = changed(first_two, ("column", "a.v"), definition="v0")
    report = check(SYNTHETIC, live, reference, name="r")
    assert states(report) == {
        "0001_m1.sql": "applied",
        "0002_m2.sql": "applied",
        "0003_m3.sql": "pending",
        "0004_m4.sql": "pending",
    }
    alter_only = row(report, "0003_m3.sql")
    assert (alter_only.expected, alter_only.found, alter_only.differs) == (0, 0, [])
    assert alter_only.missing == [
        "column a.v: definition differs\n      live: v0\n      expected: v1 (as this file leaves it)"
    ]
    assert alter_only.notes == [
        "this file only alters objects of earlier files, and they are not as it leaves them: not applied, "
        "or changed since"
    ]
    assert row(report, "0004_m4.sql").missing == []  # pending: nothing of it is there, nothing to list
    assert report.exit_code == EXIT_MIGRATIONS_PENDING  # an alter not applied is pending, not drift
    # file 3 applied: the alter-only file is applied; file 4 still pending (b is there, w is not)
    report = check(SYNTHETIC, first_two, reference, name="r")
    assert states(report)["0003_m3.sql"] == "applied"
    assert row(report, "0003_m3.sql").notes == []
    fourth = row(report, "0004_m4.sql")
    assert fourth.state == "pending" and fourth.missing == []
    # b dropped by hand, w not added: file 4 is partial, its drop counted as found
    live = only(first_two, ("table", "b"), ("column", "b.id"))
    fourth = row(check(SYNTHETIC, live, reference, name="r"), "0004_m4.sql")
    assert fourth.state == "partial"
    assert fourth.expected == 4 and fourth.found == 2  # b and b.id gone as it drops them
    assert fourth.missing == ["column a.w", "constraint a.a_w_check"]
    # everything: all applied
    assert set(states(check(SYNTHETIC, reference, reference, name="r")).values()) == {"applied"}


def test_a_dropped_object_still_there_is_named():
    reference = made_by(SYNTHETIC)
    live = added(reference, "table", "b", definition="v1", name="b")
    live = added(live, "column", "b.id", definition="v1", table_name="b")
    report = check(SYNTHETIC, live, reference, name="r")
    fourth = row(report, "0004_m4.sql")
    assert fourth.state == "partial"
    assert fourth.missing == [
        "column b.id (this file drops it; it is still there)",
        "table b (this file drops it; it is still there)",
    ]
    assert fourth.expected - fourth.found == 2
    assert report.extra == []  # a dropped object is accounted for, not extra


def test_an_altered_object_that_drifted_after_the_alter_is_drift_of_the_altering_file():
    reference = made_by(SYNTHETIC)
    live = changed(reference, ("column", "a.v"), definition="v9")
    report = check(SYNTHETIC, live, reference, name="r")
    assert states(report)["0001_m1.sql"] == "applied"  # its definition is file 3's to hold
    third = row(report, "0003_m3.sql")
    assert third.state == "pending" and third.differs == []
    assert third.missing == [
        "column a.v: definition differs\n      live: v9\n      expected: v1 (as this file leaves it)"
    ]


def test_a_file_creating_nothing_the_catalog_shows_cannot_be_told():
    files = [migration(1, "CREATE TABLE a (id int);"), migration(2, "COMMENT ON TABLE a IS 'x';")]
    report = check(files, made_by(files), made_by(files), name="r")
    second = row(report, "0002_m2.sql")
    assert (second.state, second.expected, second.found) == ("unverifiable", 0, 0)
    assert second.notes == ["creates no object the catalog shows; cannot be told without a state table"]
    assert second.missing == [] and second.differs == []
    assert report.exit_code == 0
    assert report.summary() == "2 migration files: 1 applied, 1 unverifiable"
    assert json.loads(report.to_json())["files"][1]["differs"] == []


def test_a_function_named_by_name_only_is_matched_to_its_signature():
    files = [
        migration(
            1,
            "CREATE TABLE a (id int);\n"
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\n"
            "CREATE TRIGGER a_touch BEFORE INSERT ON a FOR EACH ROW EXECUTE FUNCTION touch();",
        ),
        migration(2, "DROP TRIGGER a_touch ON a;"),
    ]
    live = made_by(files, resolve={"touch(": "touch()"})
    assert ("function", "touch()") in live.objects and ("trigger", "a.a_touch") not in live.objects
    report = check(files, live, live, name="r")
    assert states(report) == {"0001_m1.sql": "applied", "0002_m2.sql": "applied"}
    assert report.extra == [] and report.notes == []
    # the function gone: named by what the file says, with its signature unknown
    gone = Snapshot({k: v for k, v in live.objects.items() if k[0] != "function"})
    report = check(files, gone, gone, name="r")
    first = row(report, "0001_m1.sql")
    assert first.state == "partial" and first.missing == ["function touch(…)"]
    assert report.notes == []  # a signature nobody knows is not "lacking" from the reference


def test_the_parts_of_a_table_made_like_another_come_from_the_reference():
    files = [migration(1, "CREATE TABLE a (id int PRIMARY KEY);"), migration(2, "CREATE TABLE b (LIKE a);")]
    reference = added(made_by(files), "column", "b.id", definition="v1", table_name="b")
    report = check(files, reference, reference, name="r")
    assert states(report) == {"0001_m1.sql": "applied", "0002_m2.sql": "applied"}
    assert report.extra == [] and report.notes == []
    assert row(report, "0002_m2.sql").expected == 2  # the table and the column the reference shows
    live = only(reference, ("column", "b.id"))
    second = row(check(files, live, reference, name="r"), "0002_m2.sql")
    assert (second.state, second.missing) == ("partial", ["column b.id"])
    # the whole table gone: the table is named, not its parts one by one
    live = only(reference, ("table", "b"), ("column", "b.id"))
    second = row(check(files, live, reference, name="r"), "0002_m2.sql")
    assert (second.state, second.missing) == ("pending", [])
    live = added(live, "column", "b.id", definition="v1", table_name="b")  # its column left behind
    second = row(check(files, live, reference, name="r"), "0002_m2.sql")
    assert (second.state, second.missing) == ("partial", ["table b"])
    # a part of the missing table that the reference alone shows is not listed either
    checked = added(reference, "constraint", "b.b_id_check", definition="v1")
    second = row(check(files, live, checked, name="r"), "0002_m2.sql")
    assert (second.state, second.expected, second.missing) == ("partial", 3, ["table b"])
    # only the parts of that table come from the reference: anything else no file creates is said
    stale = added(reference, "table", "zzz", definition="v1")
    report = check(files, reference, stale, name="r")
    assert row(report, "0002_m2.sql").expected == 2
    assert report.notes[0].startswith("r does not match the migration files (0 object(s) it lacks, 1 no file")


def test_a_table_made_like_another_then_dropped_claims_nothing_more():
    files = [
        migration(1, "CREATE TABLE a (id int PRIMARY KEY);"),
        migration(2, "CREATE TABLE b (LIKE a);"),
        migration(3, "DROP TABLE b;"),
        migration(4, "CREATE TABLE b (x int);"),
    ]
    reference = added(made_by(files), "column", "b.extra", definition="v1", table_name="b")  # made by hand
    report = check(files, reference, reference, name="r")
    assert row(report, "0002_m2.sql").state == "unverifiable"  # its b is gone; file 4's is another
    assert row(report, "0004_m4.sql").expected == 2  # the table and x, not the column made by hand
    assert report.notes[0].startswith("r does not match the migration files (0 object(s) it lacks, 1 no file")


def test_a_table_dropped_then_made_again_is_the_later_files():
    files = [
        migration(1, "CREATE TABLE t (id int);"),
        migration(2, "DROP TABLE t;"),
        migration(3, "CREATE TABLE t (id int);"),
    ]
    report = check(files, made_by(files), made_by(files), name="r")
    assert states(report) == {
        "0001_m1.sql": "unverifiable",
        "0002_m2.sql": "unverifiable",
        "0003_m3.sql": "applied",
    }
    assert row(report, "0002_m2.sql").missing == []  # t is there: file 3 made it again, not left by file 2


def test_a_file_whose_objects_a_later_file_drops_cannot_be_told():
    files = [migration(1, "CREATE TABLE t (id int);"), migration(2, "DROP TABLE t;")]
    report = check(files, made_by(files), made_by(files), name="r")
    assert states(report) == {"0001_m1.sql": "unverifiable", "0002_m2.sql": "applied"}
    assert row(report, "0002_m2.sql").expected == row(report, "0002_m2.sql").found == 2  # t and t.id gone


def test_dropping_what_no_file_made_is_counted_as_done_when_it_is_gone():
    files = [migration(1, "DROP TABLE IF EXISTS legacy;\nCREATE TABLE t (id int);")]
    report = check(files, made_by(files), made_by(files), name="r")
    assert states(report) == {"0001_m1.sql": "applied"}
    assert (row(report, "0001_m1.sql").expected, row(report, "0001_m1.sql").found) == (3, 3)


def test_counts_and_states_of_a_report():
    rows = [
        schema_status.FileStatus("1.sql", "applied", 2, 2),
        schema_status.FileStatus("2.sql", "partial", 3, 1, missing=["table t"]),
        schema_status.FileStatus("3.sql", "pending", 1, 0),
        schema_status.FileStatus("4.sql", "unverifiable", 0, 0),
    ]
    report = schema_status.Report("r", rows, [])
    assert report.count("applied") == 1 and report.count("pending", "partial") == 2 and report.count() == 0
    assert report.pending and not report.drifted and report.exit_code == 6
    assert report.summary() == "4 migration files: 1 applied, 1 pending, 1 partial, 1 unverifiable"
    rows[1].differs.append("column t.x: default 1, expected 2")  # partial, and what is left drifted
    assert report.drifted and report.exit_code == 3
    with pytest.raises(SchemaDrift, match=r"migrations: 2.sql partial\n"):
        report.raise_for_state()
    drifted = schema_status.Report("r", [schema_status.FileStatus("1.sql", "drifted", 1, 1)], [])
    assert drifted.drifted and drifted.exit_code == 3  # drifted by its state alone
    extra = schema_status.Report("r", [], [schema_status.Extra("table", "t")])
    assert extra.drifted and extra.exit_code == 3
    assert extra.summary() == "0 migration files: ; 1 extra object(s)"


@pytest.mark.parametrize(
    ("count", "shown"),
    [(1, "t1"), (5, "t1, t2, t3, t4, t5"), (6, "t1, t2, t3, t4, t5, …"), (13, "t1, t2, t3, t4, t5, …")],
)
def test_the_note_on_tables_elsewhere_names_the_schema_the_count_at_most_five_and_the_next_step(count, shown):
    tables = [f"t{n}" for n in range(1, count + 1)]
    assert schema_status.elsewhere_note("myschema", tables) == (
        f"schema 'myschema' holds {count} of the tables the migrations create ({shown}): applied there "
        "under another search_path (a role's or a database's setting)? These tasks apply and read schema "
        "public only, whatever the search_path; move or drop those tables, then `invoke db.apply`"
    )
