"""The spec's file rules ("Migrations: directory and tooling"), each checked by ``verdict.load``
before anything is applied: one violation names the file, the line and the rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from unit_support import DECLARATION, SPEC_HEAD, compliant, printed

from leaddb import generated, lint, migrations, rules, verdict
from leaddb.errors import EXIT_FAILURE, MigrationError
from leaddb.rules import RulesBroken, Violation
from leaddb.spec import SPEC_FILENAME, Spec

NAME = "0001_probe.sql"
SESSION = "a command on the session, which a migration leaves as it found it"
FILE = f"api/db/migrations/{NAME}"
HEADER = f"-- migration: {FILE}"


def refused(make_project, files: dict[str, str | bytes], **kwargs) -> list[tuple[str, int, str, str]]:
    project = make_project(files, **kwargs)
    with pytest.raises(RulesBroken) as err:
        verdict.load(project)
    return [(v.file, v.line, v.rule, v.what) for v in err.value.violations]


def only(make_project, content: str | bytes, **kwargs) -> tuple[int, str, str]:
    """The single violation of a project whose one file is ``content``: (line, rule, what)."""
    found = refused(make_project, {NAME: content}, **kwargs)
    assert len(found) == 1, found
    file, line, rule, what = found[0]
    assert file == FILE
    return line, rule, what


def differs(line: int, spec_line: int) -> tuple[int, str, str]:
    """The rule "printed in the spec"'s finding for a file that differs from its block from
    ``line`` on (what a broken header or a missing last newline also is)."""
    return (
        line,
        "printed in the spec",
        f"differs from its block in the spec ({SPEC_FILENAME}:{spec_line}) from this line on",
    )


def loads(make_project, content: str, **kwargs) -> list[str]:
    """The statements ``load`` accepted from a one-file project (what would be sent)."""
    (migration,) = verdict.load(make_project({NAME: content}, **kwargs))
    return [s.sql for s in migration.statements]


def test_a_compliant_file_loads_with_its_statements(make_project):
    text = f"{HEADER}\n-- why this file exists\n\nBEGIN;\nCREATE TABLE IF NOT EXISTS t (id int);\nCOMMIT;\n"
    assert loads(make_project, text) == ["BEGIN", "CREATE TABLE IF NOT EXISTS t (id int)", "COMMIT"]


def test_the_repository_and_the_specs_own_blocks_follow_every_rule(project_dir):
    spec = Spec.load(project_dir / SPEC_FILENAME)
    files = verdict.load(project_dir)
    assert [m.name for m in files] == [Path(b.name).name for b in spec.blocks_of("migration")]
    blocks = [
        migrations.Migration(Path(b.name), n, b.sql) for n, b in enumerate(spec.blocks_of("migration"), 1)
    ]
    assert rules.check_files(blocks, "api/db/migrations", lint.allowed_objects(spec)) == []


def test_the_benchs_generated_migrations_follow_every_rule(tmp_path):
    files = generated.generated_migrations(tmp_path, 3)
    assert rules.check_files(files, "api/db/migrations", set()) == []
    assert [f.name for f in migrations.discover(tmp_path)] == [f.name for f in files]


# -- the case ----------------------------------------------------------------------------


def test_no_header_no_transaction_and_a_failing_second_statement_is_refused_before_applying(make_project):
    """Applied, its first statement would stay: the file has no transaction of its own."""
    text = "CREATE TABLE probe_half (id int);\nCREATE TABLE probe_half (id int);\n"
    assert refused(make_project, {NAME: text}) == [
        (
            FILE,
            1,
            "header",
            f"the first line is `CREATE TABLE probe_half (id int);`, not the header `{HEADER}`",
        ),
        (
            FILE,
            1,
            "one transaction",
            "the first statement is `CREATE TABLE probe_half (id int)`, not BEGIN: a failure would "
            "leave the statements before it applied",
        ),
        (FILE, 1, *differs(1, 12)[1:]),
        (FILE, 2, "one transaction", "the last statement is `CREATE TABLE probe_half (id int)`, not COMMIT"),
    ]


# -- naming --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "00001_probe.sql",  # five digits
        "001_probe.sql",
        "0001_Probe.sql",
        "0001-probe.sql",
        "0001_probe.SQL",
        "0001_probe.sql.orig",
        "0001_.sql",
        "0001_probe-x.sql",
        "probe.sql",
        "README.md",
        "\u0660\u0660\u0660\u0661_probe.sql",  # Arabic-Indic digits: \d would take them
    ],
)
def test_a_name_outside_the_pattern_is_refused(make_project, name):
    found = refused(make_project, {"0001_first.sql": compliant("0001_first.sql"), name: "SELECT 1;\n"})
    assert found == [
        (
            f"api/db/migrations/{name}",
            0,
            "naming",
            "not a migration file name (expected NNNN_snake_name.sql, ^[0-9]{4}_[a-z0-9_]+\\.sql$)",
        )
    ]


@pytest.mark.parametrize("name", ["0001_probe.sql", "9999_a_b_c.sql", "0001_a__b_.sql", "0001_2.sql"])
def test_the_specs_pattern_is_matched_whole(name):
    assert rules.FILENAME.fullmatch(name)
    assert not rules.FILENAME.fullmatch(name + "\n")  # `$` would match before a trailing newline
    assert not rules.FILENAME.fullmatch("x" + name)


def test_a_directory_with_a_migration_name_is_refused(make_project):
    project = make_project({"0001_first.sql": compliant("0001_first.sql")})
    (project / "api/db/migrations/0002_dir.sql").mkdir()
    with pytest.raises(RulesBroken) as err:
        verdict.load(project)
    assert [v.describe() for v in err.value.violations] == [
        'api/db/migrations/0002_dir.sql: rule "naming": not a regular file (a directory)'
    ]


def test_hidden_files_are_left_alone_as_the_entrypoint_leaves_them(make_project):
    project = make_project({"0001_first.sql": compliant("0001_first.sql"), ".gitkeep": ""})
    assert [m.name for m in verdict.load(project)] == ["0001_first.sql"]


def test_an_empty_directory_is_refused(make_project):
    assert refused(make_project, {}) == [("api/db/migrations", 0, "naming", "no migration files")]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["0002_b.sql"], [("0002_b.sql", "expected number 0001, found 0002")]),
        (["0000_a.sql", "0001_b.sql"], [("0000_a.sql", "expected number 0001, found 0000")]),
        (
            ["0001_a.sql", "0003_c.sql", "0004_d.sql", "0006_f.sql"],
            [
                ("0003_c.sql", "expected number 0002, found 0003"),
                ("0006_f.sql", "expected number 0005, found 0006"),
            ],
        ),
        (
            ["0001_a.sql", "0002_b.sql", "0002_c.sql", "0003_d.sql"],
            [("0002_c.sql", "duplicate number 0002: 0002_b.sql, 0002_c.sql")],
        ),
        (
            ["0001_a.sql", "0001_b.sql", "0003_c.sql"],
            [
                ("0001_b.sql", "duplicate number 0001: 0001_a.sql, 0001_b.sql"),
                ("0003_c.sql", "expected number 0002, found 0003"),
            ],
        ),
    ],
)
def test_numbers_start_at_0001_without_gaps_or_repeats(make_project, names, expected):
    found = refused(make_project, {n: compliant(n) for n in names})
    assert found == [(f"api/db/migrations/{name}", 0, "naming", what) for name, what in expected]


# -- text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "line", "what"),
    [
        (b"\xef\xbb\xbf" + compliant(NAME).encode(), 1, "starts with a UTF-8 byte-order mark"),
        (compliant(NAME).replace("\n", "\r\n").encode(), 1, "CRLF line ending"),
        (compliant(NAME).replace("BEGIN;\n", "BEGIN;\r").encode(), 2, "CRLF line ending"),
        (
            compliant(NAME, "CREATE TABLE IF NOT EXISTS t (x text DEFAULT '\xe9');\n").encode("latin-1"),
            3,
            "not valid UTF-8",
        ),
        (compliant(NAME, "CREATE TABLE IF NOT EXISTS t (\n\tid int\n);\n"), 4, "a tab character"),
        (
            compliant(NAME, "CREATE TABLE IF NOT EXISTS t (\n\tid int,\n\tx int\n);\n"),
            4,
            "a tab character (and 1 more line(s))",
        ),
        (compliant(NAME).replace("BEGIN;", "BEGIN; "), 2, "trailing whitespace"),
        (compliant(NAME).replace("BEGIN;", "BEGIN; -- \u00a0"), 2, "trailing whitespace"),
        (compliant(NAME).replace("\nBEGIN;", "\n  \nBEGIN;"), 2, "trailing whitespace"),
        (compliant(NAME)[:-1], 4, "no newline at the end of the file"),
        (compliant(NAME) + "\n", 5, "1 blank line(s) at the end of the file"),
        (compliant(NAME) + "\n\n\n", 5, "3 blank line(s) at the end of the file"),
    ],
)
def test_text_rules(make_project, content, line, what):
    violations = refused(make_project, {NAME: content})
    assert {file for file, _, _, _ in violations} == {FILE}
    found = [(line, rule, what) for _, line, rule, what in violations]
    if what == "no newline at the end of the file":  # its block in the spec ends in one
        assert found == [differs(4, 15), (line, "text", what)]
        return
    assert found == [(line, "text", what)]


def test_a_file_with_several_text_problems_names_each_once(make_project):
    content = (b"\xef\xbb\xbf" + compliant(NAME, "CREATE TABLE IF NOT EXISTS t (\n\tid int \n);\n").encode())[
        :-1
    ]
    found = refused(make_project, {NAME: content.replace(b"\n", b"\r\n")})
    assert [(line, what) for _, line, _, what in found] == [
        (1, "CRLF line ending"),
        (1, "starts with a UTF-8 byte-order mark"),
        (4, "a tab character"),
        (4, "trailing whitespace"),
        (6, differs(6, 17)[2]),
        (6, "no newline at the end of the file"),
    ]


@pytest.mark.parametrize("content", ["", "\n", "  \n\n", "\t\n"])
def test_an_empty_file_is_refused(make_project, content):
    assert only(make_project, content) == (0, "plain SQL", "empty migration")


def test_a_file_of_comments_only_is_refused(make_project):
    assert only(make_project, f"{HEADER}\n-- nothing yet\n") == (
        0,
        "plain SQL",
        "holds no SQL statement, only comments",
    )


# -- header --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "what"),
    [
        (
            "-- migration: api/db/migrations/0002_other.sql",
            f"the header is `-- migration: api/db/migrations/0002_other.sql`; this file's is `{HEADER}`",
        ),
        (f"-- migration: {NAME}", f"the header is `-- migration: {NAME}`; this file's is `{HEADER}`"),
        (f"-- migration:  {FILE}", f"the header is `-- migration:  {FILE}`; this file's is `{HEADER}`"),
        (f"-- Migration: {FILE}", f"the first line is `-- Migration: {FILE}`, not the header `{HEADER}`"),
        (f"--migration: {FILE}", f"the first line is `--migration: {FILE}`, not the header `{HEADER}`"),
        ("-- the enums", f"the first line is `-- the enums`, not the header `{HEADER}`"),
    ],
)
def test_the_first_line_is_the_header_naming_the_file(make_project, first, what):
    content = compliant(NAME).replace(HEADER, first)
    found = [(line, rule, what) for _, line, rule, what in refused(make_project, {NAME: content})]
    assert found == [(1, "header", what), differs(1, 12)]  # its block names the file on line 1


def test_a_wrong_header_is_quoted_up_to_100_characters_and_the_fix_names_the_right_one():
    def found(text: str) -> list[tuple[str, int, str, str, str]]:
        return [(v.file, v.line, v.rule, v.what, v.fix) for v in rules.check_header(FILE, text, HEADER)]

    wrong = "-- migration: " + "x" * 200
    fix = f"make the first line `{HEADER}`, the file's own path"
    assert found(f"{wrong}\nBEGIN;\n") == [
        (FILE, 1, "header", f"the header is `{wrong[:98]} …`; this file's is `{HEADER}`", fix)
    ]
    assert found(f"{wrong[:100]}\nBEGIN;\n") == [
        (FILE, 1, "header", f"the header is `{wrong[:100]}`; this file's is `{HEADER}`", fix)
    ]
    assert found("-- the enums\n") == [
        (FILE, 1, "header", f"the first line is `-- the enums`, not the header `{HEADER}`", fix)
    ]


def test_a_header_after_a_blank_first_line_is_not_the_header(make_project):
    found = [
        (line, rule, what) for _, line, rule, what in refused(make_project, {NAME: "\n" + compliant(NAME)})
    ]
    assert found == [(1, "header", f"the first line is ``, not the header `{HEADER}`"), differs(1, 12)]


@pytest.mark.parametrize("declared", ["`api/db/migrations/`", "`./api/db/migrations`"])
def test_the_header_uses_the_declared_directory_however_it_is_spelled(make_project, declared):
    spec = SPEC_HEAD + DECLARATION.replace("`api/db/migrations`", declared)
    assert loads(make_project, compliant(NAME), spec=spec)[0] == "BEGIN"


def test_the_header_follows_the_declared_directory(make_project):
    good = compliant(NAME).replace("api/db/migrations", "db/schema")
    spec = SPEC_HEAD + "- Migrations directory: `db/schema`\n" + printed({NAME: good}, "db/schema")
    compose = "services:\n  postgres:\n    volumes:\n      - ./db/schema:/docker-entrypoint-initdb.d:ro\n"
    project = make_project({}, spec=spec, compose=compose)
    (project / "db/schema").mkdir(parents=True)
    (project / "db/schema" / NAME).write_bytes(compliant(NAME).encode())
    with pytest.raises(RulesBroken) as err:
        verdict.load(project)
    assert [v.describe() for v in err.value.violations] == [
        f'db/schema/{NAME}:1: rule "header": the header is `{HEADER}`; '
        f"this file's is `-- migration: db/schema/{NAME}`",
        f'db/schema/{NAME}:1: rule "printed in the spec": differs from its block in the spec '
        f"({SPEC_FILENAME}:12) from this line on",
    ]
    (project / "db/schema" / NAME).write_bytes(good.encode())
    assert [m.name for m in verdict.load(project)] == [NAME]


# -- one transaction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "statements"),
    [
        ("BEGIN;\nSELECT 1;\nCOMMIT;\n", ["BEGIN", "SELECT 1", "COMMIT"]),
        ("START TRANSACTION;\nSELECT 1;\nEND;\n", ["START TRANSACTION", "SELECT 1", "END"]),
        ("begin;\nselect 1;\ncommit;\n", ["begin", "select 1", "commit"]),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE;\nCOMMIT;\n", ["BEGIN ISOLATION LEVEL SERIALIZABLE", "COMMIT"]),
        ("-- why\n/* more why */\nBEGIN;\nSELECT 1;\nCOMMIT;\n-- done\n", ["BEGIN", "SELECT 1", "COMMIT"]),
        ("BEGIN;\nSELECT 1;\nCOMMIT;\n/* a closing note */\n", ["BEGIN", "SELECT 1", "COMMIT"]),
    ],
)
def test_one_transaction_accepted(make_project, body, statements):
    assert loads(make_project, f"{HEADER}\n{body}") == statements


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        ("SELECT 1;\nCOMMIT;\n", 2, "the first statement is `SELECT 1`, not BEGIN"),
        ("SAVEPOINT a;\nCOMMIT;\n", 2, "the first statement is `SAVEPOINT a`, not BEGIN"),
        ("BEGIN;\nSELECT 1;\n", 3, "the last statement is `SELECT 1`, not COMMIT"),
        ("BEGIN;\n", 2, "the last statement is `BEGIN`, not COMMIT"),
        ("BEGIN;\nSELECT 1;\nROLLBACK;\n", 4, "the last statement is `ROLLBACK`, not COMMIT"),
        (
            "BEGIN;\nSELECT 1;\nPREPARE TRANSACTION 'x';\n",
            4,
            "the last statement is `PREPARE TRANSACTION 'x'`, not COMMIT",
        ),
        ("BEGIN;\nSELECT 1;\nCOMMIT AND CHAIN;\n", 4, "COMMIT AND CHAIN opens a new transaction"),
        ("BEGIN;\nCOMMIT;\nSELECT 1;\nCOMMIT;\n", 3, "COMMIT inside the file's transaction"),
        ("BEGIN;\nSAVEPOINT a;\nCOMMIT;\n", 3, "SAVEPOINT inside the file's transaction"),
        ("BEGIN;\nRELEASE SAVEPOINT a;\nCOMMIT;\n", 3, "RELEASE inside the file's transaction"),
        ("BEGIN;\nROLLBACK TO SAVEPOINT a;\nCOMMIT;\n", 3, "ROLLBACK TO inside the file's transaction"),
        ("BEGIN;\nROLLBACK;\nCOMMIT;\n", 3, "ROLLBACK inside the file's transaction"),
        ("BEGIN;\nBEGIN;\nCOMMIT;\n", 3, "BEGIN inside the file's transaction"),
        ("BEGIN;\nSTART TRANSACTION;\nCOMMIT;\n", 3, "START inside the file's transaction"),
        (
            "BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (id);\nCOMMIT;\n",
            3,
            "CREATE INDEX CONCURRENTLY cannot run inside a transaction block",
        ),
        (
            "BEGIN;\nREINDEX TABLE CONCURRENTLY t;\nCOMMIT;\n",
            3,
            "REINDEX CONCURRENTLY cannot run inside a transaction block",
        ),
        ("BEGIN;\nVACUUM t;\nCOMMIT;\n", 3, "VACUUM cannot run inside a transaction block"),
        ("BEGIN;\nCREATE DATABASE d;\nCOMMIT;\n", 3, "CREATE DATABASE cannot run inside a transaction block"),
        (
            "BEGIN;\nALTER SYSTEM SET work_mem = '8MB';\nCOMMIT;\n",
            3,
            "ALTER SYSTEM cannot run inside a transaction block",
        ),
        (
            "BEGIN;\nCREATE TABLESPACE s LOCATION '/x';\nCOMMIT;\n",
            3,
            "CREATE TABLESPACE cannot run inside a transaction block",
        ),
        ("BEGIN;\nDISCARD ALL;\nCOMMIT;\n", 3, "DISCARD ALL cannot run inside a transaction block"),
        (
            "BEGIN;\nDO $$\nBEGIN\n    PERFORM 1;\n    COMMIT;\nEND\n$$;\nCOMMIT;\n",
            6,
            "COMMIT inside a DO block, inside the file's transaction",
        ),
        (
            "BEGIN;\nDO $$\nBEGIN\n    IF true THEN\n        ROLLBACK;\n    END IF;\nEND\n$$;\nCOMMIT;\n",
            6,
            "ROLLBACK inside a DO block, inside the file's transaction",
        ),
    ],
)
def test_one_transaction_refused(make_project, body, line, what):
    found = refused(make_project, {NAME: f"{HEADER}\n{body}"})
    ((found_file, found_line, found_what),) = [
        (f, n, w) for f, n, rule, w in found if rule == "one transaction"
    ]
    assert (found_file, found_line) == (FILE, line)
    assert found_what.startswith(what), found_what
    # a database, server, session or maintenance command is not schema either
    beyond = what.split(" cannot")[0] in BEYOND_A_TRANSACTION_AND_THE_SCHEMA
    assert [(n, rule) for _, n, rule, _ in found if rule != "one transaction"] == (
        [(line, "schema only")] if beyond else []
    )


BEYOND_A_TRANSACTION_AND_THE_SCHEMA = {
    "REINDEX CONCURRENTLY",
    "VACUUM",
    "CREATE DATABASE",
    "ALTER SYSTEM",
    "CREATE TABLESPACE",
    "DISCARD ALL",
}


def test_a_statement_that_is_neither_first_nor_last_is_checked_once(make_project):
    """ANALYZE may run in a transaction (VACUUM may not): it is refused once, as maintenance."""
    assert only(make_project, f"{HEADER}\nBEGIN;\nANALYZE;\nCOMMIT;\n") == (
        3,
        "schema only",
        "ANALYZE is not schema: maintenance, not schema",
    )


def test_a_long_statement_is_shortened_in_the_message(make_project):
    body = (
        "CREATE TABLE IF NOT EXISTS a_table_with_a_rather_long_name_for_a_test (\n    id int\n);\nCOMMIT;\n"
    )
    line, rule, what = only(make_project, f"{HEADER}\n{body}")
    assert what.startswith(
        "the first statement is `CREATE TABLE IF NOT EXISTS a_table_with_a_rather_long_name …`"
    )


# -- not destructive -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "what"),
    [
        ("DROP TABLE IF EXISTS leads;", "DROP on leads"),
        ("ALTER TABLE leads ALTER COLUMN phone DROP NOT NULL;", "DROP NOT NULL on leads.phone"),
        (
            "ALTER TABLE leads ALTER COLUMN phone SET NOT NULL;",
            "SET NOT NULL on an existing column on leads.phone",
        ),
        ("ALTER TABLE leads DROP COLUMN phone;", "DROP COLUMN on leads.phone"),
        ("ALTER TABLE leads RENAME TO old_leads;", "RENAME on leads"),
        ("TRUNCATE leads;", "TRUNCATE on leads"),
    ],
)
def test_destructive_statements_are_refused(make_project, statement, what):
    assert only(make_project, compliant(NAME, statement + "\n")) == (3, "not destructive", what)


def test_update_and_delete_are_destructive_and_data(make_project):
    found = refused(
        make_project, {NAME: compliant(NAME, "UPDATE leads SET phone = NULL;\nDELETE FROM leads;\n")}
    )
    assert [(line, rule, what) for _, line, rule, what in found] == [
        (3, "no logic", "UPDATE writes data"),
        (3, "not destructive", "UPDATE on leads"),
        (4, "no logic", "DELETE writes data"),
        (4, "not destructive", "DELETE on leads"),
    ]


def test_the_spec_can_allow_a_destructive_change(make_project):
    spec = SPEC_HEAD + DECLARATION + "\nDestructive change allowed: `legacy`\n"
    assert loads(make_project, compliant(NAME, "DROP TABLE legacy;\n"), spec=spec)[1] == "DROP TABLE legacy"
    assert only(make_project, compliant(NAME, "DROP TABLE other;\n"), spec=spec) == (
        3,
        "not destructive",
        "DROP on other",
    )


def test_a_destructive_statement_inside_a_do_block_is_refused(make_project):
    body = "DO $$\nBEGIN\n    IF true THEN\n        DROP TABLE leads;\n    END IF;\nEND\n$$;\n"
    assert only(make_project, compliant(NAME, body)) == (
        6,
        "not destructive",
        "DROP on leads (in a DO block)",
    )


# -- no logic ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "what"),
    [
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;", "CREATE FUNCTION"),
        ("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1;", "CREATE FUNCTION"),
        (
            "CREATE FUNCTION g() RETURNS int LANGUAGE sql\n"
            "    BEGIN ATOMIC INSERT INTO t VALUES (1); SELECT 1; END;",
            "CREATE FUNCTION",
        ),
        ("CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$;", "CREATE PROCEDURE"),
        ("ALTER FUNCTION f() STABLE;", "ALTER FUNCTION"),
        ("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();", "CREATE TRIGGER"),
        (
            "CREATE CONSTRAINT TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();",
            "CREATE CONSTRAINT TRIGGER",
        ),
        ("CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f();", "CREATE EVENT TRIGGER"),
        ("CREATE RULE r AS ON INSERT TO t DO INSTEAD INSERT INTO u VALUES (1);", "CREATE RULE"),
        ("CREATE AGGREGATE a (int) (sfunc = int4pl, stype = int);", "CREATE AGGREGATE"),
        ("CREATE OPERATOR === (function = f, leftarg = int, rightarg = int);", "CREATE OPERATOR"),
        (
            "CREATE TYPE b (input = b_in, output = b_out);",
            "CREATE TYPE with input/output functions (a base type)",
        ),
        ("CREATE OPERATOR CLASS c FOR TYPE int USING btree AS OPERATOR 1 <;", "an operator class or family"),
        ("CREATE OPERATOR FAMILY fam USING btree;", "an operator class or family"),
        ("ALTER OPERATOR FAMILY fam USING btree ADD OPERATOR 1 < (int, int);", "an operator class or family"),
        ("CREATE CAST (int AS text) WITH FUNCTION f(int);", "CREATE CAST … WITH FUNCTION"),
        (
            "CREATE TRANSFORM FOR int LANGUAGE plpgsql (FROM SQL WITH FUNCTION f(internal));",
            "CREATE TRANSFORM",
        ),
        ("CREATE CONVERSION c FOR 'LATIN1' TO 'UTF8' FROM f;", "CREATE CONVERSION"),
        (
            "CREATE TEXT SEARCH PARSER p (start = a, gettoken = b, end = c, lextypes = d);",
            "CREATE TEXT SEARCH PARSER",
        ),
        ("CREATE TEXT SEARCH TEMPLATE tt (lexize = f);", "CREATE TEXT SEARCH TEMPLATE"),
    ],
)
def test_logic_is_refused(make_project, statement, what):
    assert only(make_project, compliant(NAME, statement + "\n")) == (
        3,
        "no logic",
        f"{what} is logic, not schema",
    )


@pytest.mark.parametrize(
    ("statement", "what"),
    [
        ("INSERT INTO t VALUES (1);", "INSERT writes data"),
        ("COPY t FROM STDIN;", "COPY FROM writes data"),
        ("COPY t TO '/tmp/x';", "COPY TO writes data"),
        (
            "MERGE INTO t USING u ON t.id = u.id WHEN NOT MATCHED THEN INSERT VALUES (u.id);",
            "MERGE writes data",
        ),
        ("SELECT 1 AS id INTO t2;", "SELECT INTO writes data"),
        ("CREATE TABLE t2 AS SELECT 1 AS id;", "CREATE TABLE AS writes data"),
        ("CREATE MATERIALIZED VIEW m AS SELECT 1 AS id;", "CREATE MATERIALIZED VIEW writes data"),
        ("REFRESH MATERIALIZED VIEW m;", "REFRESH MATERIALIZED VIEW writes data"),
        ("WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM x;", "INSERT writes data"),
    ],
)
def test_data_is_refused(make_project, statement, what):
    assert only(make_project, compliant(NAME, statement + "\n")) == (3, "no logic", what)


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE IF NOT EXISTS t2 AS SELECT 1 AS id WITH NO DATA;",
        "CREATE MATERIALIZED VIEW m AS SELECT 1 AS id WITH NO DATA;",
        "CREATE VIEW v AS SELECT 1 AS id;",
        "CREATE TYPE shell;",
        "CREATE TYPE mood AS ENUM ('ok');",
        "CREATE CAST (int AS text) WITHOUT FUNCTION;",
        "SELECT 1;",
        "CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;",
        "COMMENT ON TABLE t IS 'what it holds';",
    ],
)
def test_schema_without_logic_or_data_is_accepted(make_project, statement):
    assert loads(make_project, compliant(NAME, statement + "\n"))[1] == statement.rstrip(";")


def test_a_do_block_guard_is_accepted_and_its_static_sql_is_checked(make_project):
    guard = (
        "DO $$\nBEGIN\n    IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'mood') THEN\n"
        "        CREATE TYPE mood AS ENUM ('ok');\n    END IF;\nEND\n$$;\n"
    )
    assert len(loads(make_project, compliant(NAME, guard))) == 3
    writes = (
        "DO $do$\nDECLARE\n    n int;\nBEGIN\n    SELECT count(*) INTO n FROM pg_type;\n"
        "    FOR i IN 1..2 LOOP\n        INSERT INTO t VALUES (i);\n    END LOOP;\n"
        "    CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\nEND\n$do$;\n"
    )
    assert refused(make_project, {NAME: compliant(NAME, writes)}) == [
        (FILE, 9, "no logic", "INSERT writes data (in a DO block)"),
        (FILE, 11, "no logic", "CREATE FUNCTION is logic, not schema (in a DO block)"),
    ]


def test_a_do_block_on_one_line_and_one_in_another_language(make_project):
    one_line = "DO $$ BEGIN INSERT INTO t VALUES (1); END $$;\n"
    assert only(make_project, compliant(NAME, one_line)) == (
        3,
        "no logic",
        "INSERT writes data (in a DO block)",
    )
    other = "DO LANGUAGE plperl $$ INSERT $$;\n"  # not PL/pgSQL: nothing can read what it runs
    assert only(make_project, compliant(NAME, other)) == (
        3,
        "no logic",
        "a DO block in plperl: the spec's DO blocks are PL/pgSQL, the one language the checks read",
    )


def test_a_do_block_whose_body_mentions_the_wrapping_tag(make_project):
    body = "DO $x$\nBEGIN\n    RAISE NOTICE '$leaddb$';\n    INSERT INTO t VALUES (1);\nEND\n$x$;\n"
    assert only(make_project, compliant(NAME, body)) == (6, "no logic", "INSERT writes data (in a DO block)")


def test_a_do_block_plpgsql_cannot_parse_is_refused_as_unreadable(make_project):
    """What the checks cannot read passes nothing: the server might read it otherwise."""
    body = "DO $$\nBEGIN\n    SELECT 1 INTO undeclared;\nEND\n$$;\n"
    assert only(make_project, compliant(NAME, body)) == (
        3,
        "plain SQL",
        'a DO block PL/pgSQL cannot parse ("undeclared" is not a known variable): no check can read it',
    )


def test_the_plpgsql_parsers_message_is_quoted_up_to_80_characters(make_project):
    body = "DO $$\nBEGIN\n    FOR r IN EXECUTE 'SELECT 1' LOOP\n        NULL;\n    END LOOP;\nEND\n$$;\n"
    message = "loop variable of loop over rows must be a record variable or list of scalar variables"
    assert len(message) > 80
    assert only(make_project, compliant(NAME, body)) == (
        3,
        "plain SQL",
        f"a DO block PL/pgSQL cannot parse ({message[:78]} …): no check can read it",
    )


# -- plain SQL -----------------------------------------------------------------------------------


def test_meta_commands_and_syntax_errors_name_the_line(make_project):
    assert only(make_project, compliant(NAME, "\\i other.sql\n")) == (
        3,
        "plain SQL",
        "psql meta-command `\\i` is not plain SQL",
    )
    assert only(make_project, compliant(NAME, "CREAT TABLE t (id int);\n")) == (
        3,
        "plain SQL",
        'syntax error: syntax error at or near "CREAT": `CREAT TABLE t (id int);`',
    )


# -- every violation of every file, in one message -----------------------------------------------


def test_all_violations_of_all_files_are_reported_sorted_by_file_and_line(make_project):
    files = {
        "0001_first.sql": compliant("0001_first.sql", "DROP TABLE a;\n"),
        "0002_second.sql": "CREATE TABLE b (id int);\n",
        "0003_third.sql": compliant("0003_third.sql", "CREAT TABLE c ();\n").replace("BEGIN;", "BEGIN; "),
        "0005_fifth.sql": compliant("0005_fifth.sql"),
        "notes.txt": "",
    }
    project = make_project(files)
    with pytest.raises(MigrationError) as err:
        verdict.load(project)
    assert err.value.exit_code == EXIT_FAILURE
    lines = str(err.value).splitlines()
    assert lines[:10] == [
        "9 violations of the migration rules; nothing was applied:",
        '  - api/db/migrations/0001_first.sql:3: rule "not destructive": DROP on a',
        '  - api/db/migrations/0002_second.sql:1: rule "header": the first line is '
        "`CREATE TABLE b (id int);`, "
        "not the header `-- migration: api/db/migrations/0002_second.sql`",
        '  - api/db/migrations/0002_second.sql:1: rule "one transaction": the first statement is '
        "`CREATE TABLE b (id int)`, not BEGIN: a failure would leave the statements before it applied",
        '  - api/db/migrations/0002_second.sql:1: rule "one transaction": the last statement is '
        "`CREATE TABLE b (id int)`, not COMMIT",
        '  - api/db/migrations/0002_second.sql:1: rule "printed in the spec": differs from its block in the '
        f"spec ({SPEC_FILENAME}:21) from this line on",
        '  - api/db/migrations/0003_third.sql:2: rule "text": trailing whitespace',
        '  - api/db/migrations/0003_third.sql:3: rule "plain SQL": syntax error: syntax error at or near '
        '"CREAT": `CREAT TABLE c ();`',
        '  - api/db/migrations/0005_fifth.sql: rule "naming": expected number 0004, found 0005',
        '  - api/db/migrations/notes.txt: rule "naming": not a migration file name (expected '
        "NNNN_snake_name.sql, ^[0-9]{4}_[a-z0-9_]+\\.sql$)",
    ]
    assert lines[10] == (
        "  next step: fix each file above (the rules are in Technical-Architecture-Specification.md, "
        'section "Migrations: directory and tooling"):'
    )
    assert [line.split(":")[0].strip() for line in lines[11:]] == [
        "- not destructive",
        "- header",
        "- one transaction",
        "- printed in the spec",
        "- text",
        "- plain SQL",
        "- naming",
    ]


def test_one_violation_is_one_line_and_its_own_next_step(make_project):
    project = make_project({NAME: compliant(NAME, "DROP TABLE t;\n")})
    with pytest.raises(MigrationError) as err:
        verdict.load(project)
    assert str(err.value) == (
        f'{FILE}:3: rule "not destructive": DROP on t\n'
        f"  next step: {rules.FIXES['not destructive']}; nothing was applied "
        "(the rules are in Technical-Architecture-Specification.md, "
        'section "Migrations: directory and tooling")'
    )


def test_violations_order_by_file_then_line_then_rule():
    found = [
        Violation("b.sql", 1, "header", "x"),
        Violation("a.sql", 9, "text", "x"),
        Violation("a.sql", 0, "naming", "x"),
        Violation("a.sql", 9, "no logic", "x"),
    ]
    assert [(v.file, v.line, v.rule) for v in RulesBroken(found).violations] == [
        ("a.sql", 0, "naming"),
        ("a.sql", 9, "no logic"),
        ("a.sql", 9, "text"),
        ("b.sql", 1, "header"),
    ]


def test_no_violation_raises_nothing():
    rules.refuse([])


# -- each violation's own next step --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "next_step"),
    [
        (
            compliant(NAME, "\\i x.sql\n"),
            "replace the meta-command with SQL: migrations are plain SQL, applied "
            "the same way by psql and by the runner",
        ),
        (compliant(NAME, "CREAT x;\n"), "fix the statement"),
        ("\n", "write its SQL or remove the file"),
        (f"{HEADER}\n-- later\n", "write its SQL or remove the file"),
        (b"\xef\xbb\xbf" + compliant(NAME).encode(), "save it as UTF-8 without BOM"),
        (
            compliant(NAME).encode().replace(b"\n", b"\r\n"),
            "save it with LF endings (.gitattributes enforces eol=lf)",
        ),
        (compliant(NAME).encode().replace(b"t (id", b"t (\xff"), "save it as UTF-8"),
        (compliant(NAME, "CREATE TABLE IF NOT EXISTS t (\n\tid int\n);\n"), "indent with spaces"),
        (compliant(NAME).replace("BEGIN;", "BEGIN; "), "remove the whitespace at the ends of lines"),
        (compliant(NAME)[:-1], "end the file with one newline"),
        (compliant(NAME) + "\n", "end the file with exactly one newline"),
        (
            "BEGIN;\nSELECT 1;\nCOMMIT;\n".replace("BEGIN;", f"{HEADER}\nBEGIN;").replace(HEADER, "-- x"),
            f"make the first line `{HEADER}`, the file's own path",
        ),
        (
            compliant(NAME).replace("BEGIN;\n", ""),
            "start the file (after the header and its comment) with BEGIN;",
        ),
        (compliant(NAME).replace("COMMIT;\n", ""), "end the file with COMMIT; (only comments may follow it)"),
        (compliant(NAME).replace("COMMIT;", "COMMIT AND CHAIN;"), "end it with COMMIT;"),
        (compliant(NAME, "SAVEPOINT a;\n"), rules.FIXES["one transaction"]),
        (compliant(NAME, "DROP TABLE t;\n"), rules.FIXES["not destructive"]),
        (compliant(NAME, "CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING;\n"), rules.FIXES["no logic"]),
    ],
)
def test_each_violation_names_its_next_step(make_project, content, next_step):
    project = make_project({NAME: content})
    with pytest.raises(RulesBroken) as err:
        verdict.load(project)
    # a file without its header or its last newline also differs from its block in the spec
    (violation,) = [v for v in err.value.violations if v.rule != rules.PRINTED]
    assert violation.next_step == next_step
    if len(err.value.violations) > 1:
        return
    assert str(err.value).endswith(
        f"\n  next step: {next_step}; nothing was applied (the rules are in {SPEC_FILENAME}, "
        'section "Migrations: directory and tooling")'
    )


def test_a_name_or_number_problem_names_its_next_step(make_project):
    found = refused_violations(make_project, {"0002_b.sql": compliant("0002_b.sql"), "x.txt": ""})
    assert [v.next_step for v in found] == [
        "number migrations contiguously from 0001 in apply order",
        "rename it, or move it out of the migrations directory: the container executes every file there",
    ]


def test_a_directory_named_like_a_migration_names_its_next_step(make_project):
    project = make_project({"0001_a.sql": compliant("0001_a.sql")})
    (project / "api/db/migrations/0002_dir.sql").mkdir()
    with pytest.raises(RulesBroken) as err:
        verdict.load(project)
    assert [v.next_step for v in err.value.violations] == ["move it out of the migrations directory"]


def test_an_empty_directory_names_its_next_step(make_project):
    assert [v.next_step for v in refused_violations(make_project, {})] == ["write the first one, 0001_….sql"]


def refused_violations(make_project, files) -> list[Violation]:
    with pytest.raises(RulesBroken) as err:
        verdict.load(make_project(files))
    return err.value.violations


def test_the_hint_of_several_violations_lists_each_rules_fix_once(make_project):
    files = {NAME: compliant(NAME, "DROP TABLE a;\nDROP TABLE b;\n").replace("BEGIN;", "BEGIN; ")}
    with pytest.raises(RulesBroken) as err:
        verdict.load(make_project(files))
    assert err.value.hint == (
        f"fix each file above (the rules are in {SPEC_FILENAME}, "
        'section "Migrations: directory and tooling"):'
        f"\n    - text: {rules.FIXES['text']}"
        f"\n    - not destructive: {rules.FIXES['not destructive']}"
    )


# -- smaller pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "short"),
    [
        ("SELECT 1", "SELECT 1"),
        ("  SELECT 1  ", "SELECT 1"),
        ("CREATE TABLE t (\n    id int\n)", "CREATE TABLE t ( …"),
        ("x" * 60, "x" * 60),
        ("x" * 61, "x" * 58 + " …"),
        ("x" * 57 + " yyyy", "x" * 57 + " …"),
    ],
)
def test_short(sql, short):
    assert rules.excerpt(sql) == short


@pytest.mark.parametrize(
    ("statement", "found"),
    [
        (
            "DROP DATABASE d;",
            [
                (3, "not destructive", "DROP DATABASE on d"),
                (3, "one transaction", "DROP DATABASE cannot run inside a transaction block"),
            ],
        ),
        (
            "DROP TABLESPACE s;",
            [
                (3, "not destructive", "DROP TABLESPACE on s"),
                (3, "one transaction", "DROP TABLESPACE cannot run inside a transaction block"),
            ],
        ),
        (
            "DROP INDEX CONCURRENTLY i;",
            [
                (3, "not destructive", "DROP on i"),
                (3, "one transaction", "DROP INDEX CONCURRENTLY cannot run inside a transaction block"),
            ],
        ),
        ("DISCARD PLANS;", [(3, "schema only", "DISCARD is not schema: " + SESSION)]),
        ("ANALYZE t;", [(3, "schema only", "ANALYZE is not schema: maintenance, not schema")]),
        ("SELECT 1;", []),
    ],
)
def test_statements_outside_a_transaction_block(make_project, statement, found):
    content = compliant(NAME, statement + "\n")
    if not found:
        assert len(loads(make_project, content)) == 3
        return
    assert [(line, rule, what) for _, line, rule, what in refused(make_project, {NAME: content})] == found


def test_a_do_block_inside_a_do_block_and_its_lines(make_project):
    body = (
        "DO LANGUAGE PLPGSQL $$\nBEGIN\n    RAISE NOTICE 'it''s';\n"
        "    DO $inner$\n    BEGIN\n        INSERT INTO t VALUES (1);\n    END\n    $inner$;\nEND\n$$;\n"
    )
    assert refused(make_project, {NAME: compliant(NAME, body)}) == [
        (FILE, 8, "no logic", "INSERT writes data (in a DO block) (in a DO block)")
    ]


def test_every_statement_of_a_do_block_is_checked_after_a_commit_or_savepoint(make_project):
    body = "DO $$\nBEGIN\n    SAVEPOINT a;\n    COMMIT;\n    INSERT INTO t VALUES (1);\nEND\n$$;\n"
    assert refused(make_project, {NAME: compliant(NAME, body)}) == [
        (FILE, 5, "one transaction", "SAVEPOINT inside the file's transaction (in a DO block)"),
        (FILE, 6, "one transaction", "COMMIT inside a DO block, inside the file's transaction"),
        (FILE, 7, "no logic", "INSERT writes data (in a DO block)"),
    ]


def test_a_do_block_in_another_language_is_not_read_as_plpgsql(make_project):
    body = "DO LANGUAGE plperl $$ BEGIN INSERT INTO t VALUES (1); END $$;\n"
    assert only(make_project, compliant(NAME, body)) == (
        3,
        "no logic",
        "a DO block in plperl: the spec's DO blocks are PL/pgSQL, the one language the checks read",
    )


def test_a_two_line_statement_is_shortened_too():
    assert rules.excerpt("CREATE TABLE t (id int\n)") == "CREATE TABLE t (id int …"


def test_a_lone_carriage_return_ends_a_line():
    text, found = migrations.check_text("f.sql", b"BEGIN;\rDROP TABLE x;\r\nCOMMIT;\n")
    assert text == "BEGIN;\nDROP TABLE x;\nCOMMIT;\n"
    assert [(v.line, v.what) for v in found] == [(1, "CRLF line ending")]
    assert [v.line for v in migrations.check_text("f.sql", b"\nSELECT 1;\r\n")[1]] == [2]


def test_every_file_is_read_after_one_with_a_syntax_error(make_project):
    files = {
        "0001_a.sql": compliant("0001_a.sql", "CREAT x;\n"),
        "0002_b.sql": compliant("0002_b.sql", "CREAT y;\n"),
    }
    assert [(f, line, rule) for f, line, rule, _ in refused(make_project, files)] == [
        ("api/db/migrations/0001_a.sql", 3, "plain SQL"),
        ("api/db/migrations/0002_b.sql", 3, "plain SQL"),
    ]


def test_a_duplicate_number_names_its_next_step(make_project):
    files = {"0001_a.sql": compliant("0001_a.sql"), "0001_b.sql": compliant("0001_b.sql")}
    (violation,) = refused_violations(make_project, files)
    assert (violation.line, violation.next_step) == (
        0,
        "number migrations contiguously from 0001 in apply order",
    )


def test_a_directory_named_like_a_migration_is_the_whole_file(make_project):
    project = make_project({"0001_a.sql": compliant("0001_a.sql")})
    (project / "api/db/migrations/0002_dir.sql").mkdir()
    with pytest.raises(RulesBroken) as err:
        verdict.load(project)
    assert [v.line for v in err.value.violations] == [0]
