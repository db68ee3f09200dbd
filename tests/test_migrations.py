"""Discovery, reading and splitting of migration files, and resolution of their directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from leaddb import migrations
from leaddb.errors import MigrationError, MigrationPathUnspecified

SPEC_HEAD = "# Spec\n\n## Migrations: directory and tooling\n\n"
DECLARATION = "- Migrations directory: `api/db/migrations`\n"
COMPOSE = """services:
  postgres:
    image: postgres:15
    volumes:
      - ./api/db/migrations:/docker-entrypoint-initdb.d:ro
"""


def make_project(tmp_path: Path, *, spec: str = SPEC_HEAD + DECLARATION, compose: str = COMPOSE) -> Path:
    (tmp_path / "api/db/migrations").mkdir(parents=True)
    (tmp_path / "api/db/migrations/0001_first.sql").write_text(
        "BEGIN;\nSELECT 1;\nCOMMIT;\n", encoding="utf-8", newline="\n"
    )
    (tmp_path / "Technical-Architecture-Specification.md").write_text(spec, encoding="utf-8", newline="\n")
    (tmp_path / "docker-compose.yml").write_text(compose, encoding="utf-8", newline="\n")
    return tmp_path


def test_directory_resolves_when_spec_and_compose_agree(tmp_path):
    project = make_project(tmp_path)
    assert migrations.resolve_directory(project) == (project / "api/db/migrations").resolve()


def test_missing_declaration_and_mount_cite_the_spec_section(tmp_path):
    project = make_project(
        tmp_path, spec=SPEC_HEAD, compose="services:\n  postgres:\n    image: postgres:15\n"
    )
    with pytest.raises(MigrationPathUnspecified) as err:
        migrations.resolve_directory(project)
    message = str(err.value)
    assert message.startswith("MIGRATION_PATH_UNSPECIFIED: ")
    assert '"Migrations: directory and tooling"' in message
    assert "Technical-Architecture-Specification.md:3" in message
    assert "/docker-entrypoint-initdb.d" in message


def test_missing_mount_alone_is_unspecified(tmp_path):
    project = make_project(tmp_path, compose="services:\n  postgres:\n    image: postgres:15\n")
    with pytest.raises(MigrationPathUnspecified, match="mounts nothing"):
        migrations.resolve_directory(project)


def test_contradicting_declarations(tmp_path):
    spec = SPEC_HEAD + DECLARATION + "\n- Migrations directory: `db/other`\n"
    with pytest.raises(MigrationPathUnspecified, match="contradicting"):
        migrations.resolve_directory(make_project(tmp_path, spec=spec))


def test_spec_and_mount_disagree(tmp_path):
    compose = COMPOSE.replace("./api/db/migrations", "./db/migrations")
    with pytest.raises(MigrationPathUnspecified, match="mounts `./db/migrations`"):
        migrations.resolve_directory(make_project(tmp_path, compose=compose))


def test_repo_migrations_are_ordered_and_contiguous(project_dir):
    files = migrations.load(project_dir)
    assert [m.number for m in files] == list(range(1, len(files) + 1))
    assert all(migrations.FILENAME.match(m.name) for m in files)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("0001_bom.sql", b"\xef\xbb\xbfSELECT 1;\n", "byte-order mark"),
        ("0001_crlf.sql", b"SELECT 1;\r\nSELECT 2;\r\n", "0001_crlf.sql:1: CRLF"),
        ("0001_empty.sql", b"\n  \n", "empty migration"),
        ("0001_latin1.sql", b"SELECT '\xe9';\n", "not valid UTF-8"),
        ("first.sql", b"SELECT 1;\n", "not a migration file name"),
        ("0001_Upper.sql", b"SELECT 1;\n", "not a migration file name"),
    ],
)
def test_bad_files_are_refused_with_their_name(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(MigrationError, match=message) as err:
        migrations.discover(tmp_path)
    assert name in str(err.value)


def test_duplicate_and_gap_numbers(tmp_path):
    for name in ("0001_a.sql", "0002_b.sql", "0002_c.sql"):
        (tmp_path / name).write_text("SELECT 1;\n", encoding="utf-8", newline="\n")
    with pytest.raises(MigrationError, match="duplicate number 0002: 0002_b.sql, 0002_c.sql"):
        migrations.discover(tmp_path)
    shutil.rmtree(tmp_path)
    tmp_path.mkdir()
    for name in ("0001_a.sql", "0003_c.sql"):
        (tmp_path / name).write_text("SELECT 1;\n", encoding="utf-8", newline="\n")
    with pytest.raises(MigrationError, match="expected number 0002, found 0003"):
        migrations.discover(tmp_path)


def test_statements_carry_their_lines():
    text = (
        "-- header\nBEGIN;\n\nCREATE TABLE a (\n  x int\n);\n"
        "DO $$\nBEGIN\n  RAISE NOTICE 'a;b';\nEND $$;\nCOMMIT;\n"
    )
    statements = migrations.split_statements(text, "f.sql")
    assert [(s.line, s.end_line) for s in statements] == [(2, 2), (4, 6), (7, 10), (11, 11)]
    assert statements[1].sql == "CREATE TABLE a (\n  x int\n)"


def test_meta_command_is_refused_but_backslash_in_a_body_is_not():
    with pytest.raises(MigrationError, match=r"f.sql:2: psql meta-command '\\\\i other.sql'"):
        migrations.split_statements("SELECT 1;\n\\i other.sql\n", "f.sql")
    body = "DO $$\nBEGIN\n\\echo not a command here\nEND $$;\n"
    assert len(migrations.split_statements(body, "f.sql")) == 1


def test_syntax_error_names_file_and_line():
    with pytest.raises(MigrationError, match=r"f.sql:3: syntax error"):
        migrations.split_statements("SELECT 1;\n\nCREAT TABLE x ();\n", "f.sql")


def test_statements_after_comments_and_in_bodies_keep_their_text_and_lines():
    text = (
        "/* a header\n   on two lines */ -- and one more\nBEGIN;\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC SELECT 1; SELECT 2; END;\n"
        "SELECT 'it''s; here', E'a\\'b;c';;\n;SELECT 2 /* tail */ ;\nCOMMIT"
    )
    statements = migrations.split_statements(text, "f.sql")
    assert [(s.sql, s.line, s.end_line) for s in statements] == [
        ("BEGIN", 3, 3),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC SELECT 1; SELECT 2; END", 4, 5),
        ("SELECT 'it''s; here', E'a\\'b;c'", 6, 6),
        ("SELECT 2 /* tail */", 7, 7),
        ("COMMIT", 8, 8),
    ]
    assert migrations.split_statements("-- only a comment\n", "f.sql") == ()


ONE_TRANSACTION = [
    pytest.param("BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n", True, id="BEGIN ... COMMIT"),
    pytest.param("-- c\nbegin work;\nSELECT 1;\nend;\n", True, id="lower case, END"),
    pytest.param("START TRANSACTION ISOLATION LEVEL SERIALIZABLE;\nSELECT 1;\nCOMMIT;", True, id="START"),
    pytest.param(
        "BEGIN;\nSAVEPOINT s;\nSELECT 1;\nROLLBACK TO SAVEPOINT s;\nRELEASE s;\nCOMMIT;\n",
        True,
        id="savepoints",
    ),
    pytest.param("BEGIN;\nPREPARE p AS SELECT 1;\nCOMMIT;\n", True, id="PREPARE of a query"),
    pytest.param("BEGIN;\nCOMMIT;\n", True, id="empty transaction"),
    pytest.param("CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n", False, id="no BEGIN"),
    pytest.param("BEGIN;\nCREATE TABLE a (id int);\n", False, id="no COMMIT"),
    pytest.param("SELECT 1;\nBEGIN;\nSELECT 2;\nCOMMIT;\n", False, id="a statement before BEGIN"),
    pytest.param("BEGIN;\nSELECT 1;\nCOMMIT;\nSELECT 2;\n", False, id="a statement after COMMIT"),
    pytest.param("BEGIN;\nSELECT 1;\nCOMMIT AND CHAIN;\n", False, id="COMMIT AND CHAIN"),
    pytest.param("BEGIN;\nSELECT 1;\nCOMMIT/* x */;\nBEGIN;\nSELECT 2;\nCOMMIT;\n", False, id="two"),
    pytest.param("BEGIN;\nSELECT 1;\nROLLBACK;\nCOMMIT;\n", False, id="ROLLBACK inside"),
    pytest.param("BEGIN;\nSELECT 1;\nPREPARE TRANSACTION 'x';\n", False, id="PREPARE TRANSACTION"),
    pytest.param("BEGIN;\nSELECT 1;\nROLLBACK;\n", False, id="ends with ROLLBACK"),
    pytest.param("-- nothing\n", False, id="no statement"),
]


@pytest.mark.parametrize(("text", "expected"), ONE_TRANSACTION)
def test_a_file_is_one_transaction_only_from_begin_to_commit_with_nothing_ending_it_between(text, expected):
    assert migrations.Migration(Path("0001_x.sql"), 1, text).single_transaction is expected


def test_every_repo_migration_is_one_transaction(project_dir):
    assert all(m.single_transaction for m in migrations.load(project_dir))
