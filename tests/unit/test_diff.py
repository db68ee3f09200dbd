"""Drift's diff over two snapshots, its one-line descriptions, and the checks of the spec's blocks
against the files: no server (the snapshots are built by hand or read from the committed dump)."""

from __future__ import annotations

from pathlib import Path

import pytest

from leaddb import drift
from leaddb.catalog import CatalogObject, Snapshot
from leaddb.errors import SpecError
from leaddb.spec import SPEC_FILENAME, Spec


def obj(kind: str, name: str, **properties) -> CatalogObject:
    return CatalogObject(kind, name, tuple(sorted(properties.items())))


def snap(*objects: CatalogObject) -> Snapshot:
    return Snapshot({(o.kind, o.name): o for o in objects})


LEADS = obj("table", "leads", persistence="p")
PHONE = obj("column", "leads.phone", type="text", not_null=False)
PHONE_CHECK = obj("constraint", "leads.leads_phone_check", definition="CHECK (phone <> '')")
INDEX = obj("index", "leads_phone_idx", table_name="leads", definition="CREATE INDEX … USING btree (phone)")
SEQUENCE = obj("sequence", "leads_id_seq", owned_by_table="leads")
TRIGGER = obj("trigger", "leads.leads_touch")
ENUM = obj("enum", "lead_status", labels=("received", "routed"))


def changes(live: Snapshot, spec: Snapshot) -> list[tuple[str, str, str]]:
    return [(d.kind, d.name, d.change) for d in drift.diff(live, spec)]


def test_equal_snapshots_have_no_difference():
    both = snap(LEADS, PHONE, ENUM)
    assert drift.diff(both, snap(LEADS, PHONE, ENUM)) == []


def test_missing_extra_and_changed_in_key_order():
    live = snap(LEADS, PHONE, obj("enum", "lead_status", labels=("routed", "received")), obj("view", "v"))
    spec = snap(LEADS, PHONE, ENUM, obj("extension", "btree_gist"))
    assert changes(live, spec) == [
        ("enum", "lead_status", "changed"),
        ("extension", "btree_gist", "missing"),
        ("view", "v", "extra"),
    ]
    (changed, missing, extra) = drift.diff(live, spec)
    assert changed.live == live.get("enum", "lead_status") and changed.spec == ENUM
    assert missing.live is None and missing.spec == spec.get("extension", "btree_gist")
    assert extra.spec is None and extra.live == live.get("view", "v")


def test_a_missing_table_is_named_once_not_with_its_parts():
    spec = snap(LEADS, PHONE, PHONE_CHECK, INDEX, SEQUENCE, TRIGGER, ENUM)
    assert changes(snap(ENUM), spec) == [("table", "leads", "missing")]


def test_an_extra_table_is_named_once_not_with_its_parts():
    live = snap(LEADS, PHONE, PHONE_CHECK, INDEX, SEQUENCE, TRIGGER)
    assert changes(live, snap()) == [("table", "leads", "extra")]


def test_a_changed_table_keeps_its_parts_differences():
    live = snap(obj("table", "leads", persistence="u"), obj("column", "leads.phone", type="varchar"))
    assert changes(live, snap(LEADS, PHONE)) == [
        ("column", "leads.phone", "changed"),
        ("table", "leads", "changed"),
    ]


def test_a_part_whose_table_exists_on_both_sides_is_named():
    assert changes(snap(LEADS), snap(LEADS, PHONE, INDEX, SEQUENCE)) == [
        ("column", "leads.phone", "missing"),
        ("index", "leads_phone_idx", "missing"),
        ("sequence", "leads_id_seq", "missing"),
    ]


def test_a_part_of_a_missing_table_that_is_extra_is_still_named():
    """Only parts that go the same way as their table are folded into it."""
    live = snap(obj("column", "leads.phone", type="text"))
    assert changes(live, snap(LEADS)) == [("column", "leads.phone", "extra"), ("table", "leads", "missing")]


def test_owner_table_of_each_kind():
    assert drift.owner_table(PHONE) == "leads"
    assert drift.owner_table(PHONE_CHECK) == "leads"
    assert drift.owner_table(TRIGGER) == "leads"
    assert drift.owner_table(INDEX) == "leads"
    assert drift.owner_table(SEQUENCE) == "leads"
    assert drift.owner_table(obj("index", "i")) is None
    assert drift.owner_table(LEADS) is None
    assert drift.owner_table(ENUM) is None
    assert drift.owner_table(obj("column", "a.b.c")) == "a"


@pytest.mark.parametrize(
    ("difference", "reference", "text"),
    [
        (drift.Difference("table", "leads", "missing", None, LEADS), "spec", "table leads: missing"),
        (
            drift.Difference("index", "leads_phone_idx", "missing", None, INDEX),
            "spec",
            "index leads_phone_idx: missing (spec: CREATE INDEX … USING btree (phone))",
        ),
        (
            drift.Difference("index", "leads_phone_idx", "missing", None, INDEX),
            "dump.json",
            "index leads_phone_idx: missing (dump.json: CREATE INDEX … USING btree (phone))",
        ),
        (drift.Difference("view", "v", "extra", obj("view", "v"), None), "spec", "view v: not in the spec"),
        (
            drift.Difference("constraint", PHONE_CHECK.name, "extra", PHONE_CHECK, None),
            "first apply",
            "constraint leads.leads_phone_check: not in the first apply (live: CHECK (phone <> ''))",
        ),
        (
            drift.Difference(
                "column",
                "leads.phone",
                "changed",
                obj("column", "leads.phone", type="varchar", not_null=True, default=""),
                obj("column", "leads.phone", type="text", not_null=False, default="'x'::text"),
            ),
            "spec",
            "column leads.phone: default none, spec 'x'::text; not_null True, spec False; "
            "type varchar, spec text",
        ),
        (
            drift.Difference(
                "enum",
                "lead_status",
                "changed",
                obj("enum", "lead_status", labels=("routed", "received")),
                ENUM,
            ),
            "spec",
            "enum lead_status: labels (routed, received), spec (received, routed)",
        ),
        (
            drift.Difference(
                "index",
                "i",
                "changed",
                obj("index", "i", definition="CREATE INDEX i ON t (a)", table_name="t"),
                obj("index", "i", definition="CREATE INDEX i ON t (b)", table_name="t"),
            ),
            "dump",
            "index i: definition differs\n"
            "      live: CREATE INDEX i ON t (a)\n"
            "      dump: CREATE INDEX i ON t (b)",
        ),
        (
            drift.Difference(
                "column",
                "t.a",
                "changed",
                obj("column", "t.a", identity=None, extra="x"),
                obj("column", "t.a", identity="a"),
            ),
            "spec",
            "column t.a: extra x, spec none; identity none, spec a",
        ),
    ],
)
def test_describe(difference, reference, text):
    assert difference.describe(reference) == text


def test_describe_says_spec_by_default():
    assert (
        drift.Difference("view", "v", "extra", obj("view", "v"), None).describe() == "view v: not in the spec"
    )


def test_the_committed_dump_against_itself_and_without_one_table(project_dir):
    dump = Snapshot.load(project_dir / "api/db/schema.snapshot.json")
    assert drift.diff(dump, dump) == []
    without = Snapshot({k: v for k, v in dump.objects.items() if k != ("table", "invoices")})
    assert changes(without, dump) == [("table", "invoices", "missing")]


def test_coverage_counts_equal_objects_per_kind():
    live = snap(LEADS, obj("column", "leads.phone", type="varchar"), ENUM, obj("view", "v"))
    spec = snap(LEADS, PHONE, obj("column", "leads.email"), ENUM)
    assert drift.coverage(live, spec) == {"enum": (1, 1), "table": (1, 1), "column": (0, 2), "view": (0, 0)}


# -- the spec's blocks as migrations (the files against them: tests/unit/test_printed.py) ---------


def test_the_specs_migration_blocks_become_migrations_in_spec_order():
    text = (
        "# S\n\n```sql\n-- migration: api/db/migrations/0002_b.sql\nSELECT 2;\n```\n\n"
        "```sql\n-- migration: api/db/migrations/0001_a.sql\nSELECT 1;\n```\n"
    )
    found = drift.spec_migrations(Spec(Path("s.md"), text))
    assert [(m.number, m.path.as_posix(), m.text) for m in found] == [
        (
            1,
            f"{SPEC_FILENAME}:4 (api/db/migrations/0002_b.sql)",
            "-- migration: api/db/migrations/0002_b.sql\nSELECT 2;\n",
        ),
        (
            2,
            f"{SPEC_FILENAME}:9 (api/db/migrations/0001_a.sql)",
            "-- migration: api/db/migrations/0001_a.sql\nSELECT 1;\n",
        ),
    ]


def test_a_spec_without_migration_blocks_is_a_spec_error():
    with pytest.raises(SpecError) as err:
        drift.spec_migrations(Spec(Path("s.md"), "# S\n\n```sql\nSELECT 1;\n```\n"))
    assert str(err.value) == (
        f"{SPEC_FILENAME}: prints no migration block (```sql whose first line is -- migration: FILE)\n"
        "  next step: print every migration's SQL in the spec"
    )


def test_describe_lists_only_the_properties_that_differ():
    difference = drift.Difference(
        "column", "t.a", "changed", obj("column", "t.a", a=1, b=2, c=3), obj("column", "t.a", a=1, b=9, c=3)
    )
    assert difference.describe() == "column t.a: b 2, spec 9"


def test_a_definition_only_when_there_is_one():
    assert drift._definition(None, "live") == ""
    assert drift._definition(obj("table", "t"), "live") == ""
    assert drift._definition(INDEX, "spec") == " (spec: CREATE INDEX … USING btree (phone))"
