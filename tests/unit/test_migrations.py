"""Discovery, reading and splitting of migration files, and resolution of their directory."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from unit_support import COMPOSE, DECLARATION, SPEC_HEAD, compliant

from leaddb import migrations, rules, verdict
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
    files = verdict.load(project_dir)
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
        'f.sql:2: rule "plain SQL": psql meta-command `\\i` is not plain SQL',
        'f.sql:3: rule "plain SQL": psql meta-command `\\echo` is not plain SQL',
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


def test_a_statement_is_kept_to_its_last_character_whatever_it_is():
    text = "ALTER TABLE t RENAME TO X;\nSELECT 'a;' AS X;\nSELECT 1 AS \"X;\";\nSELECT 2 AS XX"
    statements = migrations.split_statements(text, "f.sql")
    assert [s.sql for s in statements] == [
        "ALTER TABLE t RENAME TO X",
        "SELECT 'a;' AS X",
        'SELECT 1 AS "X;"',
        "SELECT 2 AS XX",
    ]


def test_an_indented_meta_command_is_refused():
    with pytest.raises(MigrationError, match=r"f.sql:2: rule \"plain SQL\": psql meta-command `\\i`"):
        migrations.split_statements("SELECT 1;\n   \\i x.sql\n", "f.sql")


def test_a_missing_compose_file_mounts_nothing(make_project):
    project = make_project()
    (project / "docker-compose.yml").unlink()
    with pytest.raises(
        MigrationPathUnspecified, match="docker-compose.yml mounts nothing at /docker-entrypoint"
    ):
        migrations.resolve_directory(project)


def test_files_are_read_as_utf8(make_project, monkeypatch):
    """A text-mode read without an encoding takes the locale's (cp1252 on many Windows machines):
    the files and the spec are read as bytes and decoded as UTF-8 whatever the locale says."""
    import locale

    monkeypatch.setattr(locale, "getpreferredencoding", lambda *a, **k: "cp1252")
    monkeypatch.setattr(locale, "getencoding", lambda: "cp1252")
    content = compliant(
        "0001_first.sql", "-- caf\u00e9 \u2014 \u00fcber\nCREATE TABLE IF NOT EXISTS t (id int);\n"
    )
    (migration,) = verdict.load(make_project({"0001_first.sql": content}))
    assert migration.text == content


def test_a_backslash_line_inside_an_unfinished_statement_is_a_meta_command():
    """psql runs a meta-command wherever it stands outside quotes, bodies and comments, in the
    middle of a statement too (it then sends the statement without the line)."""
    with pytest.raises(MigrationError) as err:
        migrations.split_statements("CREATE TABLE t (\n\\i x\n);\n", "f.sql")
    assert str(err.value).startswith('f.sql:2: rule "plain SQL": psql meta-command `\\i` is not plain SQL')


# -- lint's work grows with the file, not with its square ----------------------------------------


class Tally(str):
    """A file's text that counts the characters each of its own methods goes through: a check
    that counts lines from the start of the file for every statement (as lint did) goes through
    the square of its length."""

    work: Counter

    def _through(self, start=None, end=None, found: int | None = None, length: int = 0) -> None:
        first, last, _ = slice(start, end).indices(len(self))
        if found is not None and found >= 0:  # a search stops where it finds
            last = found + length
        Tally.work["characters gone through"] += max(last - first, 0)

    def count(self, sub, start=None, end=None):
        self._through(start, end)
        return super().count(sub, start, end)

    def find(self, sub, start=None, end=None):
        found = super().find(sub, start, end)
        self._through(start, end, found, len(sub))
        return found

    def rfind(self, sub, start=None, end=None):
        self._through(start, end)
        return super().rfind(sub, start, end)

    def index(self, sub, start=None, end=None):
        found = super().index(sub, start, end)
        self._through(start, end, found, len(sub))
        return found

    def __getitem__(self, key):
        if isinstance(key, slice):
            self._through(key.start, key.stop)
        return super().__getitem__(key)

    def splitlines(self, *args, **kwargs):
        self._through()
        return super().splitlines(*args, **kwargs)

    def split(self, *args, **kwargs):
        self._through()
        return super().split(*args, **kwargs)


@pytest.fixture
def lint_work(monkeypatch):
    """What linting one file of a text costs, counted: parser calls and the characters handed
    to the parser, line indexes and the characters they index, characters psql's lexer scanned,
    characters the text's own methods went through."""
    import pglast
    from pglast import parser

    work: Counter = Counter()
    Tally.work = work
    for module, name in (
        (pglast, "parse_sql"),
        (pglast, "parse_plpgsql"),
        (parser, "split"),
        (parser, "scan"),
    ):
        real = getattr(module, name)

        def counting(query, *args, _real=real, **kwargs):
            work["parser calls"] += 1
            work["characters parsed"] += len(query)
            return _real(str(query), *args, **kwargs)  # the parser takes no subclass of str

        monkeypatch.setattr(module, name, counting)
    real_index = migrations.LineIndex.__init__

    def indexing(self, text):
        work["line indexes"] += 1
        work["characters indexed"] += len(text)
        real_index(self, text)

    monkeypatch.setattr(migrations.LineIndex, "__init__", indexing)
    pattern = migrations._PSQL_TOKEN

    class Scanning:
        def search(self, text, pos):
            found = pattern.search(text, pos)
            work["characters scanned"] += (found.end() if found else len(text)) - pos
            return found

    monkeypatch.setattr(migrations, "_PSQL_TOKEN", Scanning())

    def measure(text: str) -> Counter:
        work.clear()
        migration = migrations.Migration(Path("0001_x.sql"), 1, Tally(text))
        rules.check_files([migration], "api/db/migrations", set())
        return Counter(work)

    return measure


def many_statements(n: int) -> str:
    return "".join(f"CREATE TABLE IF NOT EXISTS t{i} (id int);\n" for i in range(n))


def many_backslash_lines(n: int) -> str:
    """Lines starting with a backslash inside a string: each one made lint parse the text before it."""
    return "COMMENT ON TABLE t IS '\n" + "\\x not a meta-command\n" * n + "';\n"


def many_do_blocks(n: int) -> str:
    guard = "DO $$\nBEGIN\n    IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 't{i}') THEN\n"
    guard += "        CREATE TYPE t{i} AS ENUM ('a');\n    END IF;\nEND\n$$;\n"
    return "".join(guard.format(i=i) for i in range(n))


@pytest.mark.parametrize("shape", [many_statements, many_backslash_lines, many_do_blocks])
def test_lint_work_grows_linearly_with_the_file(lint_work, shape):
    """No timing: the work counted for a file four times as long is at most about four times as
    much (quadratic work would be sixteen times: 10k statements took 3 s, 40k 38 s)."""
    small, large = (lint_work(compliant("0001_x.sql", shape(n))) for n in (100, 400))
    assert small["characters parsed"] and small["characters gone through"]
    for what in small:
        assert large[what] <= 4.5 * small[what] + 10, (what, small[what], large[what])
    assert large["line indexes"] == small["line indexes"] <= 2  # one per text, not one per statement
    if shape is not many_do_blocks:  # a DO block's body and expressions are parsed on their own
        assert large["parser calls"] == small["parser calls"] <= 3


# -- what psql reads otherwise than the server ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("SELECT 1; \\! id\n", [(10, "meta", "\\!")]),  # anywhere on a line, not only at its start
        ("SELECT 1;\n\\gexec\nSELECT 2;\n", [(10, "meta", "\\gexec")]),
        ("SELECT 1 \\g\n", [(9, "meta", "\\g")]),
        (
            "\\set x 1\n\\set y 2 \\\\ \\echo z\n",
            [(0, "meta", "\\set"), (9, "meta", "\\set")],
        ),  # rest of the line
        ("SELECT :foo;\n", [(7, "variable", ":foo")]),
        ("SELECT :'foo', :\"bar\";\n", [(7, "variable", ":'foo'"), (15, "variable", ':"bar"')]),
        ("SELECT :{?foo};\n", [(7, "variable", ":{?foo}")]),
        ("SELECT a[1:n] FROM t;\n", [(10, "variable", ":n")]),  # psql substitutes a set variable n
        # nothing of psql's inside quotes, bodies and comments
        ("SELECT '\\! id', ':foo';\n", []),
        ("SELECT E'it\\'s \\\\', ':x';\n", []),  # backslash escapes in an E'' string
        ("SELECT 'a''b\\', 2;\n", []),  # a standard string ends at its quote, backslash or not
        ('SELECT "we\\""ird:x";\n', []),
        ("SELECT 1; -- \\! id :x\n", []),
        ("/* \\! id /* nested */ :x */ SELECT 1;\n", []),
        ("DO $body$ BEGIN RAISE NOTICE '\\! :x'; END $body$;\n", []),
        ("DO $$\n\\echo inside a body\n$$;\n", []),
        ("SELECT 1::int, x::text, '{}'::jsonb;\n", []),
        ("SELECT f(a := 1);\n", []),
        ("SELECT $1, a$b$c;\n", []),  # a parameter, an identifier with dollars: no body opens
        ("SELECT e'\\'' || 'x';\n", []),
        # unterminated: the parser reports the syntax error; nothing after it is psql's
        ("SELECT 'never closed \\! id\n", []),
        ("SELECT $$ never closed \\! id\n", []),
        ("/* never closed \\! id\n", []),
    ],
)
def test_psql_scan_finds_meta_commands_and_variables_where_psql_does(text, found):
    assert migrations.psql_scan(text) == found


def test_a_psql_variable_is_refused_naming_it():
    with pytest.raises(MigrationError) as err:
        migrations.split_statements("SELECT 1;\nCREATE TABLE :name (id int);\n", "f.sql")
    assert str(err.value).startswith(
        'f.sql:2: rule "plain SQL": psql variable `:name` is not plain SQL: psql would substitute it, '
        "the runner not\n  next step: write the value itself"
    )


def test_a_meta_command_message_names_the_command_only():
    with pytest.raises(MigrationError) as err:
        migrations.split_statements("SELECT 1;\n\\! cat /proc/self/environ # PGPASSWORD=x\n", "f.sql")
    assert (
        err.value.violations[0].describe()
        == 'f.sql:2: rule "plain SQL": psql meta-command `\\!` is not plain SQL'
    )


def test_the_specs_sql_has_nothing_of_psqls(project_dir):
    from leaddb.spec import SPEC_FILENAME, Spec

    spec = Spec.load(project_dir / SPEC_FILENAME)
    assert [migrations.psql_scan(b.sql) for b in spec.blocks_of("migration")] == [[]] * len(
        spec.blocks_of("migration")
    )


@pytest.mark.parametrize("n", [0, 1, 3])
def test_line_index_lines(n):
    text = "a\n" * n + "tail"
    index = migrations.LineIndex(text)
    for offset in range(len(text) + 1):
        assert index.line(offset) == text.count("\n", 0, offset) + 1
    assert len(index) == n + 1
    assert index.text_of(n + 1) == "tail"
    assert [index.text_of(line) for line in range(1, n + 1)] == ["a"] * n
    assert len(migrations.LineIndex("x\n")) == 1 and len(migrations.LineIndex("")) == 0


@pytest.mark.parametrize(
    ("text", "found"),
    [
        # after each kind of quoting psql reads on, and finds what follows
        ("SELECT 'a', :x, 'b';\n", [(12, "variable", ":x")]),
        ("SELECT 'it''s', :x;\n", [(16, "variable", ":x")]),
        ('SELECT "a""b", :x;\n', [(15, "variable", ":x")]),
        ("SELECT E'a\\'b', :x;\n", [(16, "variable", ":x")]),
        ("SELECT E'a', :x, E'b';\n", [(13, "variable", ":x")]),
        ("DO $$ :a $$; SELECT :y, $$ $$;\n", [(20, "variable", ":y")]),
        ("DO $t$ $$ :a $t$; SELECT :y;\n", [(25, "variable", ":y")]),
        ("SELECT 1; -- :a\n:x;\n", [(16, "variable", ":x")]),
        ("SELECT 1; -- a comment ending in a backslash \\\nSELECT 2;\n", []),
        ("SELECT 1; -- no line end after it", []),
        ("\\echo a :b 'c\n:x;\n", [(0, "meta", "\\echo"), (14, "variable", ":x")]),
        ("\\q", [(0, "meta", "\\q")]),
        ("/* a */ :x /* b */;\n", [(8, "variable", ":x")]),
        ("/* a /* b */ c */ :x;\n", [(18, "variable", ":x")]),
        ("/* a /* b */ c /* d */ e */ :x /* f */;\n", [(28, "variable", ":x")]),
        ("/* a */\\! b\n", [(7, "meta", "\\!")]),
        ("SELECT E'never closed :x\n", []),
    ],
)
def test_psql_reads_on_after_each_quoted_part(text, found):
    assert migrations.psql_scan(text) == found


def test_a_syntax_error_on_the_first_line_names_line_1():
    with pytest.raises(MigrationError) as err:
        migrations.split_statements("CREAT TABLE x ();\n", "f.sql")
    assert err.value.violations[0].line == 1


def test_the_parsers_message_is_quoted_cut():
    text = "SELECT 1;\nSELECT '" + "secret " * 40 + "\n"
    with pytest.raises(MigrationError) as err:
        migrations.split_statements(text, "f.sql")
    (violation,) = err.value.violations
    message = "unterminated quoted string at or near \"'" + "secret " * 40
    assert violation.what == (
        f"syntax error: {message[:98].rstrip()} …: `{('SELECT ' + chr(39) + 'secret ' * 40)[:58].rstrip()} …`"
    )


def test_a_long_meta_command_or_variable_is_quoted_cut():
    text = "SELECT :" + "v" * 50 + ";\n\\" + "m" * 30 + "\n"
    with pytest.raises(MigrationError) as err:
        migrations.split_statements(text, "f.sql")
    meta, variable = sorted(err.value.violations, key=lambda v: v.line, reverse=True)
    assert meta.what == f"psql meta-command `\\{'m' * 17} …` is not plain SQL"
    assert variable.what.startswith(f"psql variable `:{'v' * 37} …` is not plain SQL")
    assert variable.next_step == (
        "write the value itself; where a colon must be followed by a name (an array slice), put a space "
        "after the colon"
    )


@pytest.mark.parametrize(
    ("name", "spelled_out"),
    [
        ("IDENT_CHAR", "[A-Za-z0-9_\x80-\U0010ffff]"),
        ("IDENT_START", "[A-Za-z_\x80-\U0010ffff]"),
        ("IDENT_OR_DOLLAR", "[A-Za-z0-9_$\x80-\U0010ffff]"),
    ],
)
def test_the_lexer_s_identifier_classes_are_the_spelled_out_ones(name, spelled_out):
    """Written as what they are not (cheap to compile), they match exactly what psql's lexer
    takes for an identifier's characters: every ASCII one, every boundary above it, and every
    97th code point."""
    points = {*range(0x180), 0x7FF, 0x800, 0xD7FF, 0xD800, 0xDFFF, 0xE000, 0xFFFF, 0x10000, 0x10FFFF}
    every = "".join(map(chr, sorted(points | set(range(0, 0x110000, 97)))))
    ours = re.findall(getattr(migrations, name), every)
    assert ours == re.findall(spelled_out, every)
    assert len(every) - 128 < len(ours) < len(every)  # all of non-ASCII, some of ASCII
