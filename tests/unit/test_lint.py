"""The non-destructive lint: PostgreSQL's parser finds what drops, renames or rewrites."""

from __future__ import annotations

from pathlib import Path

import pglast
import pytest

from leaddb import lint, rules
from leaddb.migrations import Migration
from leaddb.spec import Spec

EMPTY_SPEC = Spec(Path("spec.md"), "# Spec\n")


def findings(sql: str, spec: Spec = EMPTY_SPEC) -> list[tuple[str, str, int]]:
    """(what, target, line) for each destructive part of each statement of ``sql``."""
    allowed = lint.allowed_objects(spec)
    return [
        (what, target, statement.line)
        for statement in Migration(Path("0001_change.sql"), 1, sql).statements
        for raw in pglast.parse_sql(statement.sql)
        for what, target in lint.destructive(raw.stmt, allowed)
    ]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("DROP TABLE IF EXISTS leads;", ("DROP", "leads")),
        ("DROP INDEX leads_status_received_at_idx;", ("DROP", "leads_status_received_at_idx")),
        ("ALTER TABLE leads RENAME TO old_leads;", ("RENAME", "leads")),
        ("ALTER TABLE leads RENAME COLUMN phone TO tel;", ("RENAME", "leads")),
        ("ALTER TABLE leads DROP COLUMN phone;", ("DROP COLUMN", "leads.phone")),
        (
            "ALTER TABLE leads ALTER COLUMN phone TYPE varchar(20);",
            ("ALTER COLUMN … TYPE (rewrites the table)", "leads.phone"),
        ),
        (
            "ALTER TABLE leads ALTER COLUMN phone SET NOT NULL;",
            ("SET NOT NULL on an existing column", "leads.phone"),
        ),
        (
            "ALTER TABLE leads DROP CONSTRAINT leads_phone_format_check;",
            ("DROP CONSTRAINT", "leads.leads_phone_format_check"),
        ),
        (
            "ALTER TABLE leads ALTER COLUMN phone DROP NOT NULL;",
            ("DROP NOT NULL", "leads.phone"),
        ),
        ("TRUNCATE leads;", ("TRUNCATE", "leads")),
        ("TRUNCATE leads, sources;", ("TRUNCATE", "leads, sources")),
        ("DELETE FROM leads;", ("DELETE", "leads")),
        ("UPDATE leads SET phone = NULL;", ("UPDATE", "leads")),
        ("DROP TABLE a, b;", ("DROP", "a, b")),
        ("DROP TYPE public.lead_status;", ("DROP", "public.lead_status")),
        ("DROP DOMAIN d;", ("DROP", "d")),
        ("DROP FUNCTION f(int), g();", ("DROP", "f, g")),
        ("DROP ROLE a, b;", ("DROP ROLE", "a, b")),
        ("DROP OWNED BY a, CURRENT_USER;", ("DROP OWNED", "a, CURRENT_USER")),
        ("ALTER TYPE lead_status RENAME TO status;", ("RENAME", "lead_status")),
        ("ALTER SCHEMA s RENAME TO t;", ("RENAME", "s")),
        ("ALTER FUNCTION f(int) RENAME TO g;", ("RENAME", "f")),
        ("ALTER TYPE lead_status RENAME VALUE 'returned' TO 'refunded';", ("RENAME VALUE", "lead_status")),
    ],
)
def test_destructive_statements_are_found(sql, expected):
    assert findings(f"BEGIN;\n{sql}\nCOMMIT;\n") == [(*expected, 2)]


def test_additive_statements_pass():
    sql = (
        "BEGIN;\nCREATE TABLE IF NOT EXISTS t (id int);\nALTER TABLE t ADD COLUMN IF NOT EXISTS x int;\n"
        "ALTER TABLE t ALTER COLUMN x SET DEFAULT 0;\nCREATE INDEX IF NOT EXISTS t_x_idx ON t (x);\n"
        "ALTER TYPE lead_status ADD VALUE IF NOT EXISTS 'archived';\nCOMMIT;\n"
    )
    assert findings(sql) == []


def test_the_spec_can_allow_an_object():
    spec = Spec(Path("spec.md"), "# Spec\n\nDestructive change allowed: `legacy_table`\n")
    assert findings("DROP TABLE legacy_table;\n", spec) == []
    assert findings("DROP TABLE other_table;\n", spec) == [("DROP", "other_table", 1)]


def test_repo_migrations_are_additive(project_dir, migration_files):
    spec = Spec.load(project_dir / "Technical-Architecture-Specification.md")
    assert [f for m in migration_files for f in findings(m.text, spec)] == []


def test_every_destructive_part_of_one_alter_table_is_found():
    sql = "ALTER TABLE leads DROP COLUMN a, ALTER COLUMN b DROP DEFAULT, ALTER COLUMN c DROP NOT NULL;\n"
    assert findings(sql) == [("DROP COLUMN", "leads.a", 1), ("DROP NOT NULL", "leads.c", 1)]


def test_an_allowed_object_matches_by_its_last_name_part():
    spec = Spec(Path("spec.md"), "Destructive change allowed: `phone`\nDestructive change allowed: `s.t`\n")
    assert lint.allowed_objects(spec) == {"phone", "s.t"}
    assert findings("ALTER TABLE leads DROP COLUMN phone;\nDROP TABLE s.t;\nDROP TABLE s.u;\n", spec) == [
        ("DROP", "s.u", 3)
    ]


def test_a_finding_is_reported_under_the_rule_with_file_line_what_and_target():
    migration = Migration(Path("0001_change.sql"), 1, "BEGIN;\nDROP TABLE\n    leads;\nCOMMIT;\n")
    (violation,) = rules.check_statements(migration.name, migration.text, migration.statements, set())
    assert violation.describe() == '0001_change.sql:2: rule "not destructive": DROP on leads'


def test_destructive_takes_one_parsed_statement():
    (raw,) = pglast.parse_sql("DROP TABLE a")
    assert lint.destructive(raw.stmt, set()) == [("DROP", "a")]
    assert lint.destructive(raw.stmt, {"a"}) == []
