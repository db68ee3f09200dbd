"""Discovery, reading and splitting of migration files, and resolution of their directory."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from unit_support import COMPOSE, DECLARATION, SPEC_HEAD

from leaddb import migrations, rules
from leaddb.compose import ComposeError
from leaddb.errors import MigrationError, MigrationPathUnspecified


def test_directory_resolves_when_spec_and_compose_agree(make_project):
    project = make_project()
    assert migrations.resolve_directory(project) == (project / "api/db/migrations").resolve()


def test_missing_declaration_and_mount_cite_the_spec_section(make_project):
    project = make_project(spec=SPEC_HEAD, compose="services:\n  postgres:\n    image: postgres:15\n")
    with pytest.raises(MigrationPathUnspecified) as err:
        migrations.resolve_directory(project)
    message = str(err.value)
    assert message.startswith("MIGRATION_PATH_UNSPECIFIED: ")
    assert '"Migrations: directory and tooling"' in message
    assert "Technical-Architecture-Specification.md:3" in message
    assert "/docker-entrypoint-initdb.d" in message


def test_missing_mount_alone_is_unspecified(make_project):
    project = make_project(compose="services:\n  postgres:\n    image: postgres:15\n")
    with pytest.raises(MigrationPathUnspecified, match="mounts nothing"):
        migrations.resolve_directory(project)


def test_invalid_compose_yaml_is_reported_with_its_line_not_as_a_missing_mount(make_project):
    project = make_project(compose=COMPOSE.replace("    volumes:", "   volumes:"))
    with pytest.raises(ComposeError) as err:
        migrations.resolve_directory(project)
    assert str(err.value).startswith("docker-compose.yml:4:4: not valid YAML")
    assert not isinstance(err.value, MigrationPathUnspecified)


def test_declared_directory_that_is_a_file_is_not_a_directory(make_project):
    project = make_project()
    shutil.rmtree(project / "api/db/migrations")
    (project / "api/db/migrations").write_text("not a directory\n", encoding="utf-8", newline="\n")
    with pytest.raises(MigrationPathUnspecified, match="`api/db/migrations` is not a directory"):
        migrations.resolve_directory(project)
    (project / "api/db/migrations").unlink()
    with pytest.raises(MigrationPathUnspecified, match="`api/db/migrations` does not exist"):
        migrations.resolve_directory(project)


def test_declared_directory_whose_name_cannot_be_looked_up_is_one_message(make_project):
    long = "x" * 300  # ENAMETOOLONG from the directory checks themselves
    project = make_project(
        spec=SPEC_HEAD + f"- Migrations directory: `{long}`\n",
        compose=COMPOSE.replace("./api/db/migrations", f"./{long}"),
    )
    with pytest.raises(MigrationPathUnspecified, match=r"cannot be read \(File name too long\)"):
        migrations.resolve_directory(project)


def test_contradicting_declarations(make_project):
    spec = SPEC_HEAD + DECLARATION + "\n- Migrations directory: `db/other`\n"
    with pytest.raises(MigrationPathUnspecified) as err:
        migrations.resolve_directory(make_project(spec=spec))
    assert "contradicting migrations directories: `api/db/migrations` at line 5, `db/other` at line 7" in str(
        err.value
    )


def test_spec_and_mount_disagree(make_project):
    compose = COMPOSE.replace("./api/db/migrations", "./db/migrations")
    with pytest.raises(MigrationPathUnspecified, match="mounts `./db/migrations`"):
        migrations.resolve_directory(make_project(compose=compose))


def test_repo_migrations_are_ordered_and_contiguous(project_dir):
    files = migrations.load(project_dir)
    assert [m.number for m in files] == list(range(1, len(files) + 1))
    assert all(rules.FILENAME.fullmatch(m.name) for m in files)
    assert [m.display() for m in files][0] == "api/db/migrations/0001_extensions.sql"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "0001_bom.sql",
            b"\xef\xbb\xbfSELECT 1;\n",
            '0001_bom.sql:1: rule "text": starts with a UTF-8 byte-order mark',
        ),
        ("0001_crlf.sql", b"SELECT 1;\r\nSELECT 2;\r\n", '0001_crlf.sql:1: rule "text": CRLF line ending'),
        ("0001_empty.sql", b"\n  \n", '0001_empty.sql: rule "plain SQL": empty migration'),
        (
            "0001_latin1.sql",
            b"SELECT 1;\nSELECT '\xe9';\n",
            '0001_latin1.sql:2: rule "text": not valid UTF-8',
        ),
        ("first.sql", b"SELECT 1;\n", 'first.sql: rule "naming": not a migration file name'),
        ("0001_Upper.sql", b"SELECT 1;\n", 'Upper.sql: rule "naming": not a migration file name'),
    ],
)
def test_bad_files_are_refused_with_their_name(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(MigrationError) as err:
        migrations.discover(tmp_path)
    assert str(err.value).startswith(f"{(tmp_path / name).as_posix()}"), str(err.value)
    assert message in str(err.value)


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
    with pytest.raises(MigrationError) as err:
        migrations.split_statements("SELECT 1;\n\\i other.sql\n\\echo x\n", "f.sql")
    assert [v.describe() for v in err.value.violations] == [
        "f.sql:2: rule \"plain SQL\": psql meta-command '\\\\i other.sql' is not plain SQL",
        "f.sql:3: rule \"plain SQL\": psql meta-command '\\\\echo x' is not plain SQL",
    ]
    body = "DO $$\nBEGIN\n\\echo not a command here\nEND $$;\n"
    assert len(migrations.split_statements(body, "f.sql")) == 1


def test_syntax_error_names_file_and_line():
    with pytest.raises(MigrationError) as err:
        migrations.split_statements("SELECT 1;\n\nCREAT TABLE x ();\n", "f.sql")
    assert str(err.value).startswith(
        'f.sql:3: rule "plain SQL": syntax error: syntax error at or near "CREAT": `CREAT TABLE x ();`\n'
        "  next step: fix the statement; nothing was applied"
    )


def test_a_syntax_error_at_the_end_of_the_input_names_the_last_line():
    with pytest.raises(MigrationError) as err:
        migrations.split_statements("SELECT 1;\nCREATE TABLE b (y int", "f.sql")
    assert str(err.value).startswith('f.sql:2: rule "plain SQL": syntax error: syntax error at end of input')


@pytest.mark.parametrize(
    ("sql", "rest"),
    [
        ("SELECT 1", "SELECT 1"),
        ("  \n SELECT 1", "SELECT 1"),
        ("-- a\n-- b\nSELECT 1", "SELECT 1"),
        ("/* a */ /* b\n c */ SELECT 1", "SELECT 1"),
        ("-- a\n  /* b */\n  SELECT 1 -- c", "SELECT 1 -- c"),
        ("-- only a comment", ""),
        ("-- a\nSELECT 1\nFROM t", "SELECT 1\nFROM t"),
        ("/* a */ SELECT 1 /* b */ + 2", "SELECT 1 /* b */ + 2"),
        ("/* unclosed SELECT 1", "/* unclosed SELECT 1"),
    ],
)
def test_leading_comments_are_skipped(sql, rest):
    """pglast 7 (PostgreSQL 16) locates a statement at the end of the one before, comments included."""
    assert migrations._skip_comments(sql) == rest


def test_a_statement_after_a_leading_newline_is_on_line_2():
    assert [s.line for s in migrations.split_statements("\nSELECT 1;\n", "f.sql")] == [2]
    with pytest.raises(MigrationError) as err:
        migrations.split_statements("\nCREAT x;\n", "f.sql")
    assert str(err.value).startswith('f.sql:2: rule "plain SQL"')


def test_the_checksum_covers_names_and_texts_in_order():
    a = migrations.Migration(Path("0001_a.sql"), 1, "x")
    b = migrations.Migration(Path("0002_b.sql"), 2, "y")
    base = migrations.checksum([a, b])
    assert base == migrations.checksum([a, b]) and len(base) == 64
    assert base != migrations.checksum([b, a])
    assert base != migrations.checksum([a, migrations.Migration(Path("0002_c.sql"), 2, "y")])
    assert base != migrations.checksum([a, migrations.Migration(Path("0002_b.sql"), 2, "y ")])
    assert migrations.checksum([migrations.Migration(Path("ab"), 1, "c")]) != migrations.checksum(
        [migrations.Migration(Path("a"), 1, "bc")]
    )
    one = migrations.checksum([migrations.Migration(Path("a.sql"), 1, "b")])
    assert one == hashlib.sha256(b"a.sql\0b\0").hexdigest()
    assert migrations.checksum([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_a_last_statement_without_a_semicolon_is_whole():
    statements = migrations.split_statements("SELECT 1;\nSELECT\n  2", "f.sql")
    assert [(s.sql, s.line, s.end_line) for s in statements] == [("SELECT 1", 1, 1), ("SELECT\n  2", 2, 3)]


def test_an_indented_meta_command_is_refused():
    with pytest.raises(MigrationError, match=r"f.sql:2: rule \"plain SQL\": psql meta-command '\\\\i x.sql'"):
        migrations.split_statements("SELECT 1;\n   \\i x.sql\n", "f.sql")


def test_a_missing_compose_file_mounts_nothing(make_project):
    project = make_project()
    (project / "docker-compose.yml").unlink()
    with pytest.raises(
        MigrationPathUnspecified, match="docker-compose.yml mounts nothing at /docker-entrypoint"
    ):
        migrations.resolve_directory(project)


def test_files_are_read_as_utf8(make_project, monkeypatch):
    """Path.read_text without an encoding takes the locale's (cp1252 on many Windows machines)."""
    from pathlib import Path as RealPath

    from leaddb import drift
    from leaddb.spec import Spec

    seen = []
    original = RealPath.read_text

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("encoding", args[0] if args else None))
        return original(self, *args, **kwargs)

    project = make_project()
    monkeypatch.setattr(RealPath, "read_text", spy)
    spec = Spec.load(project / "Technical-Architecture-Specification.md")
    drift.verbatim_differences(
        Spec(spec.path, "```sql\n-- migration: api/db/migrations/0001_first.sql\n```\n"), project
    )
    assert seen and all(str(e).lower().replace("-", "") == "utf8" for e in seen), seen


def test_a_backslash_line_inside_an_unfinished_statement_is_the_parsers_to_judge():
    """Only text that parses whole before the line makes it a meta-command; the scanner alone
    would call this one a meta-command."""
    with pytest.raises(MigrationError) as err:
        migrations.split_statements("CREATE TABLE t (\n\\i x\n);\n", "f.sql")
    assert str(err.value).startswith('f.sql:2: rule "plain SQL": syntax error: ')
