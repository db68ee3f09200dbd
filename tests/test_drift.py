"""Drift: any single change of an object in a migration is caught and named, and nothing else is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leaddb import catalog, drift, runner
from leaddb.catalog import Snapshot
from leaddb.migrations import Migration
from leaddb.spec import SPEC_FILENAME, Spec


@pytest.fixture(scope="session")
def spec(project_dir) -> Spec:
    return Spec.load(project_dir / SPEC_FILENAME)


@pytest.fixture(scope="session")
def expected(server, spec) -> Snapshot:
    return drift.expected_snapshot(spec, server)


@pytest.fixture
def applied(fresh_db, migration_files):
    """Apply the repo's migrations with one textual change to one file; return the live snapshot."""

    def apply(filename: str, old: str, new: str) -> Snapshot:
        files = []
        for m in migration_files:
            text = m.text
            if m.name == filename:
                assert old in text, f"mutation target not found in {filename}: {old!r}"
                text = text.replace(old, new)
            files.append(Migration(m.path, m.number, text))
        db = fresh_db(None)
        runner.apply(db, files)
        return catalog.snapshot_of(db)

    return apply


def changes(live: Snapshot, expected: Snapshot) -> list[tuple[str, str, str]]:
    return [(d.kind, d.name, d.change) for d in drift.diff(live, expected)]


def test_clean_schema_has_no_drift(applied, expected):
    assert changes(applied("0001_extensions.sql", "", ""), expected) == []


MUTATIONS = [
    pytest.param(
        "0006_leads.sql",
        "CREATE INDEX IF NOT EXISTS leads_status_received_at_idx\n    ON leads (status, received_at);",
        "",
        ("index", "leads_status_received_at_idx", "missing"),
        id="index dropped",
    ),
    pytest.param(
        "0006_leads.sql",
        "COMMIT;",
        "CREATE INDEX leads_email_idx ON leads (email);\nCOMMIT;",
        ("index", "leads_email_idx", "extra"),
        id="index added",
    ),
    pytest.param(
        "0006_leads.sql",
        "WHERE billing_status = 'billable'",
        "WHERE billing_status = 'invoiced'",
        ("index", "leads_billable_buyer_idx", "changed"),
        id="index predicate",
    ),
    pytest.param(
        "0002_enums.sql",
        "'received', 'validated', 'rejected', 'duplicate'",
        "'received', 'validated', 'duplicate', 'rejected'",
        ("enum", "lead_status", "changed"),
        id="enum label order",
    ),
    pytest.param(
        "0006_leads.sql",
        "first_name           text,",
        "first_name           varchar(100),",
        ("column", "leads.first_name", "changed"),
        id="column type",
    ),
    pytest.param(
        "0006_leads.sql",
        "first_name           text,",
        "first_name           text, middle_name text,",
        ("column", "leads.middle_name", "extra"),
        id="column added",
    ),
    pytest.param(
        "0007_invoices.sql",
        "CHECK (quantity > 0)",
        "CHECK (quantity >= 0)",
        ("constraint", "invoice_line_items.invoice_line_items_quantity_check", "changed"),
        id="check definition",
    ),
    pytest.param(
        "0007_invoices.sql",
        "REFERENCES invoices (id, buyer_id, currency) ON DELETE CASCADE",
        "REFERENCES invoices (id, buyer_id, currency) ON DELETE RESTRICT",
        ("constraint", "invoice_line_items.invoice_line_items_invoice_fkey", "changed"),
        id="on delete action",
    ),
]


@pytest.mark.parametrize(("filename", "old", "new", "expected_change"), MUTATIONS)
def test_single_change_is_named_and_nothing_else(applied, expected, filename, old, new, expected_change):
    assert changes(applied(filename, old, new), expected) == [expected_change]


def test_missing_table_is_named_once_not_with_every_column(applied, expected, migration_files):
    text = next(m.text for m in migration_files if m.name == "0007_invoices.sql")
    table = text[text.index("CREATE TABLE IF NOT EXISTS invoice_line_items") : text.index("COMMIT;")]
    assert changes(applied("0007_invoices.sql", table, ""), expected) == [
        ("table", "invoice_line_items", "missing")
    ]


def test_changed_object_shows_both_definitions(applied, expected):
    live = applied("0007_invoices.sql", "CHECK (quantity > 0)", "CHECK (quantity >= 0)")
    (difference,) = drift.diff(live, expected)
    text = difference.describe()
    assert "definition differs" in text
    assert "live: CHECK (quantity >= 0)" in text and "spec: CHECK (quantity > 0)" in text


def test_column_change_names_the_property(applied, expected):
    (difference,) = drift.diff(
        applied("0006_leads.sql", "first_name           text,", "first_name           varchar(100),"),
        expected,
    )
    assert difference.describe() == "column leads.first_name: type character varying(100), spec text"


def test_spec_alone_changed_is_reported_by_the_verbatim_check(spec, project_dir):
    block = spec.blocks_of("migration")[2]
    edited = Spec(spec.path, spec.text.replace(block.sql, block.sql.replace("BEGIN;", "BEGIN; -- edited"), 1))
    problems = drift.verbatim_differences(edited, project_dir)
    assert len(problems) == 1
    assert block.name in problems[0] and "not verbatim" in problems[0]
    assert drift.verbatim_differences(spec, project_dir) == []


def test_snapshot_json_round_trip(expected, tmp_path):
    path = tmp_path / "snapshot.json"
    expected.save(path)
    assert Snapshot.load(path) == expected


def test_coverage_is_complete_on_the_clean_schema(applied, expected):
    cover = drift.coverage(applied("0001_extensions.sql", "", ""), expected)
    assert cover["table"] == (13, 13) and cover["enum"] == (4, 4) and cover["extension"] == (1, 1)
    assert all(present == specified for present, specified in cover.values())


# -- the Markdown extraction ---------------------------------------------------------------

_sql_line = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="`"),
    max_size=40,
)
_prose = st.lists(st.from_regex(r"[A-Za-z ,.;:()*_-]{0,60}", fullmatch=True), max_size=4)


@settings(max_examples=100, deadline=None)
@given(
    bodies=st.lists(st.lists(_sql_line, min_size=1, max_size=6), min_size=1, max_size=5),
    prose=_prose,
)
def test_every_migration_block_is_extracted_exactly(bodies, prose):
    parts, expected_blocks = ["# Spec", ""], []
    for n, lines in enumerate(bodies, 1):
        sql = "\n".join([f"-- migration: api/db/migrations/{n:04d}_x.sql", *lines]) + "\n"
        expected_blocks.append(sql)
        parts += [
            *(p for p in prose if p.strip() and not re.match(r"^\s*[-*+#>]|^\s*\d", p)),
            "",
            "```sql",
            sql + "```",
            "",
        ]
    spec = Spec(Path("spec.md"), "\n".join(parts))
    assert [b.sql for b in spec.blocks_of("migration")] == expected_blocks
    assert [b.name for b in spec.blocks_of("migration")] == [
        f"api/db/migrations/{n:04d}_x.sql" for n in range(1, len(bodies) + 1)
    ]


def test_unterminated_fence_is_a_spec_error():
    from leaddb.errors import SpecError

    with pytest.raises(SpecError, match="never closed"):
        _ = Spec(Path("spec.md"), "# Spec\n\n```sql\n-- migration: a.sql\nSELECT 1;\n").blocks
