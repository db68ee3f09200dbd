"""Reading the spec: sections, SQL blocks, the migrations directory's declaration, the targets."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leaddb import migrations
from leaddb.errors import MigrationPathUnspecified, SpecError
from leaddb.spec import SPEC_FILENAME, Declaration, Section, Spec, SqlBlock

TEXT = """# Spec

Intro.

## Migrations

```sql
-- migration: api/db/migrations/0001_a.sql
BEGIN;
COMMIT;
```

```sql
-- query: leads by status
SELECT 1;
```

```sql
--optional:   lead_notes
CREATE TABLE lead_notes ();
```

```sql
SELECT 'no marker';
```

```python
-- migration: not/sql.sql
```

### Deeper

## Migrations: directory and tooling

- Migrations directory: `api/db/migrations`
- Migrations directory: plain text, no code

## Performance targets

| percentile | target (seconds) |
|---|---|
| p50 | 3 |
| p95 | 10 s |
| p100 | 1 |
| pX | 2 |
| median | 4 |
"""


@pytest.fixture
def spec() -> Spec:
    return Spec(Path("spec.md"), TEXT)


def line_of(fragment: str, text: str = TEXT) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_sections_carry_heading_level_and_line(spec):
    assert spec.sections == [
        Section("Spec", 1, 1),
        Section("Migrations", 2, 5),
        Section("Deeper", 3, line_of("### Deeper")),
        Section("Migrations: directory and tooling", 2, line_of("## Migrations: directory")),
        Section("Performance targets", 2, line_of("## Performance targets")),
    ]


def test_section_at_a_line_is_the_last_heading_at_or_before_it(spec):
    migrations_section, deeper = spec.sections[1], spec.sections[2]
    assert spec.section_at(4) == spec.sections[0]
    assert spec.section_at(5) == migrations_section
    assert spec.section_at(deeper.line - 1) == migrations_section
    assert spec.section_at(deeper.line) == deeper
    assert Spec(Path("s.md"), "text\n\n# First\n").section_at(1) is None


def test_sql_blocks_their_kind_name_first_line_and_section(spec):
    migrations_section = spec.sections[1]
    assert spec.blocks == [
        SqlBlock(
            "migration",
            "api/db/migrations/0001_a.sql",
            "-- migration: api/db/migrations/0001_a.sql\nBEGIN;\nCOMMIT;\n",
            8,
            migrations_section,
        ),
        SqlBlock(
            "query",
            "leads by status",
            "-- query: leads by status\nSELECT 1;\n",
            line_of("-- query"),
            migrations_section,
        ),
        SqlBlock(
            "optional",
            "lead_notes",
            "--optional:   lead_notes\nCREATE TABLE lead_notes ();\n",
            line_of("--optional"),
            migrations_section,
        ),
        SqlBlock(None, None, "SELECT 'no marker';\n", line_of("SELECT 'no marker'"), migrations_section),
    ]
    assert [b.name for b in spec.blocks_of("migration")] == ["api/db/migrations/0001_a.sql"]
    assert [b.name for b in spec.blocks_of("optional")] == ["lead_notes"]
    assert spec.blocks_of("nothing") == []


def test_a_block_says_where_it_is(spec):
    assert spec.blocks[0].where == f'{SPEC_FILENAME}:8 (section "Migrations")'
    assert SqlBlock(None, None, "", 3, None).where == f"{SPEC_FILENAME}:3"


def test_a_fence_tagged_sql_plus_more_info_is_sql_and_sqlite_is_not():
    spec = Spec(Path("s.md"), "```sql title\nSELECT 1;\n```\n\n```sqlite\nSELECT 2;\n```\n")
    assert [b.sql for b in spec.blocks] == ["SELECT 1;\n"]


@pytest.mark.parametrize(
    ("text", "line", "where", "fence"),
    [
        ("# Spec\n\n## Data\n\n```sql\nSELECT 1;\n", 5, ' (section "Data")', "```"),
        ("```sql\nSELECT 1;\n", 1, "", "```"),
        ("# Spec\n\n```sql\n", 3, ' (section "Spec")', "```"),
        # a fence of four backticks is closed by four or more, which the message says
        ("# Spec\n\n````sql\nSELECT 1;\n```\n", 3, ' (section "Spec")', "````"),
    ],
)
def test_an_unclosed_fence_names_its_line_and_section(text, line, where, fence):
    with pytest.raises(SpecError) as err:
        _ = Spec(Path("s.md"), text).blocks
    assert str(err.value) == (
        f"{SPEC_FILENAME}:{line}{where}: the {fence}sql fence opened here is never closed\n"
        f"  next step: close the code block with {fence} on a line of its own"
    )


def test_an_empty_closed_block_is_a_block():
    (block,) = Spec(Path("s.md"), "```sql\n```\n").blocks
    assert (block.kind, block.sql, block.line) == (None, "", 2)


def test_declarations_name_the_path_line_and_section(spec):
    section = spec.sections[3]
    assert spec.declarations == [
        Declaration(PurePosixPath("api/db/migrations"), line_of("Migrations directory: `api"), section)
    ]


def test_every_declaration_counts_wherever_it_stands():
    text = (
        "# A\n\nMigrations directory: `one`\n\n## B\n\n- Migrations directory: `two` and `three`\n"
        "- The Migrations directory: `not a declaration`\n"
    )
    spec = Spec(Path("s.md"), text)
    assert [(str(d.path), d.line, d.section.heading) for d in spec.declarations] == [
        ("one", 3, "A"),
        ("two", 7, "B"),
    ]


def test_the_declarations_line_reaches_the_message(make_project):
    spec = (
        "# Spec\n\n## Migrations: directory and tooling\n\nx\n\n- Migrations directory: `api/db/migrations`\n"
    )
    spec += "\n\n- Migrations directory: `db/other`\n"
    with pytest.raises(MigrationPathUnspecified) as err:
        migrations.resolve_directory(make_project(spec=spec))
    assert (
        "the spec declares contradicting migrations directories: `api/db/migrations` at line 7, "
        f'`db/other` at line 10 ({SPEC_FILENAME}:3, section "Migrations: directory and tooling")'
    ) in str(err.value)


def test_a_missing_section_is_cited_by_file_alone(make_project):
    with pytest.raises(MigrationPathUnspecified) as err:
        migrations.resolve_directory(make_project(spec="# Spec\n"))
    assert f'the spec does not declare the migrations directory ({SPEC_FILENAME}, section "' in str(err.value)


def test_targets_are_the_percentile_rows(spec):
    assert spec.targets == {"p50": 3.0, "p95": 10.0}


def test_a_target_that_is_not_a_number_is_a_spec_error():
    spec = Spec(Path("s.md"), "| percentile | target |\n|---|---|\n| p99 | fast |\n")
    with pytest.raises(SpecError) as err:
        _ = spec.targets
    assert str(err.value) == (
        f"{SPEC_FILENAME}:3: target p99 is 'fast', not a number of seconds\n"
        "  next step: write the target as a plain number of seconds, e.g. | p50 | 3 |"
    )
    empty = Spec(Path("s.md"), "| percentile | target |\n|---|---|\n| p99 |  |\n")
    with pytest.raises(SpecError, match="target p99 is ''"):
        _ = empty.targets


def test_a_one_column_row_is_not_a_target():
    assert Spec(Path("s.md"), "| percentile |\n|---|\n| p50 |\n").targets == {}


def test_a_missing_spec_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError) as err:
        Spec.load(tmp_path / SPEC_FILENAME)
    assert str(tmp_path / SPEC_FILENAME) in str(err.value)


def test_the_spec_is_read_as_utf8(tmp_path):
    (tmp_path / SPEC_FILENAME).write_bytes("# Spéc\n".encode())
    assert Spec.load(tmp_path / SPEC_FILENAME).sections == [Section("Spéc", 1, 1)]


# -- the Markdown extraction, for any text -------------------------------------------------------

_sql_line = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="`"),
    max_size=40,
)
_prose = st.lists(st.from_regex(r"[A-Za-z ,.;:()*_-]{0,60}", fullmatch=True), max_size=4)


@settings(deadline=None)
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


def test_text_after_a_table_is_not_a_row():
    spec = Spec(
        Path("s.md"), "| percentile | target |\n|---|---|\n| p50 | 3 |\n\nAfter the table.\n\n| p95 | 9 |\n"
    )
    assert spec.targets == {"p50": 3.0}


def test_a_loaded_spec_keeps_its_path_and_a_missing_one_says_how_to_restore_it(tmp_path):
    (tmp_path / SPEC_FILENAME).write_text("# S\n", encoding="utf-8", newline="\n")
    assert Spec.load(tmp_path / SPEC_FILENAME).path == tmp_path / SPEC_FILENAME
    with pytest.raises(SpecError) as err:
        Spec.load(tmp_path / "missing.md")
    assert err.value.hint == RESTORE


def test_resolving_the_directory_says_how_to_declare_it(make_project):
    hint = (
        'declare it once in the spec ("- Migrations directory: `api/db/migrations`" under '
        '"## Migrations: directory and tooling") and mount the same directory read-only at '
        "/docker-entrypoint-initdb.d in docker-compose.yml"
    )
    spec = "# Spec\n\n## Migrations: directory and tooling\n\n"
    compose = "services:\n  postgres:\n    image: postgres:15\n"
    with pytest.raises(MigrationPathUnspecified) as err:
        migrations.resolve_directory(make_project(spec=spec, compose=compose))
    assert err.value.hint == hint
    assert "the spec does not declare the migrations directory" in str(err.value)
    assert "; docker-compose.yml mounts nothing at /docker-entrypoint-initdb.d" in str(err.value)
    project = make_project()
    (project / "Technical-Architecture-Specification.md").write_text(
        spec + "- Migrations directory: `db/none`\n", encoding="utf-8", newline="\n"
    )
    compose_file = project / "docker-compose.yml"
    compose_file.write_text(
        compose_file.read_text(encoding="utf-8").replace("./api/db/migrations", "./db/none"),
        encoding="utf-8",
        newline="\n",
    )
    with pytest.raises(MigrationPathUnspecified) as err:
        migrations.resolve_directory(project)
    assert err.value.detail == (
        "the declared migrations directory `db/none` does not exist "
        '(Technical-Architecture-Specification.md:3, section "Migrations: directory and tooling")'
    )
    assert err.value.hint == hint


def test_a_mount_that_disagrees_with_the_declaration_says_how_to_fix_it(make_project):
    compose = "services:\n  postgres:\n    volumes:\n      - ./db/other:/docker-entrypoint-initdb.d:ro\n"
    with pytest.raises(MigrationPathUnspecified) as err:
        migrations.resolve_directory(make_project(compose=compose))
    assert err.value.hint.startswith(
        'declare it once in the spec ("- Migrations directory: `api/db/migrations`"'
    )


# -- loading: one message for an unreadable or malformed spec, at load -------------------------

GOOD = "# Spec\n\n## Migrations\n\n```sql\n-- migration: api/db/migrations/0001_a.sql\nSELECT 1;\n```\n"


RESTORE = f"restore {SPEC_FILENAME} at the project root (git checkout -- {SPEC_FILENAME})"


def _load(tmp_path: Path, content: str | bytes) -> Spec:
    path = tmp_path / SPEC_FILENAME
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return Spec.load(path)


def _failure(tmp_path: Path, content: str | bytes) -> str:
    with pytest.raises(SpecError) as err:
        _load(tmp_path, content)
    return str(err.value)


def test_the_repositorys_spec_loads():
    spec = Spec.load(Path(__file__).resolve().parents[2] / SPEC_FILENAME)
    assert spec.blocks_of("migration") and spec.targets and spec.declarations


def test_not_utf8_names_the_line(tmp_path):
    assert _failure(tmp_path, b"# Spec\n\ncaf\xe9\n") == (
        f"{SPEC_FILENAME}:3: not valid UTF-8 (byte 0xe9)\n  next step: save the spec as UTF-8"
    )


def test_a_directory_or_missing_spec_is_one_message(tmp_path):
    with pytest.raises(SpecError, match="the spec is missing"):
        Spec.load(tmp_path / SPEC_FILENAME)
    (tmp_path / SPEC_FILENAME).mkdir()
    with pytest.raises(SpecError) as err:
        Spec.load(tmp_path / SPEC_FILENAME)
    assert str(err.value) == (f"{SPEC_FILENAME} is a directory, not the spec\n  next step: {RESTORE}")


def test_a_byte_order_mark_is_not_part_of_the_first_heading(tmp_path):
    spec = _load(tmp_path, "\ufeff" + GOOD)
    assert spec.sections[0].heading == "Spec"
    assert spec.blocks[0].line == 6


def test_unclosed_fence_fails_at_load_not_when_blocks_are_first_read(tmp_path):
    message = _failure(tmp_path, GOOD.removesuffix("```\n"))
    assert message.startswith(f'{SPEC_FILENAME}:5 (section "Migrations"): the ```sql fence opened here')


def test_any_unclosed_fence_fails_because_it_swallows_what_follows(tmp_path):
    # an unclosed ```text fence would hide the declaration (and any sql block) after it
    text = GOOD + "\n```text\nnotes\n\n## Migrations: directory and tooling\n\n- Migrations directory: `x`\n"
    assert _failure(tmp_path, text).startswith(
        f'{SPEC_FILENAME}:10 (section "Migrations"): the ```text fence'
    )
    assert "the ~~~~ fence" in _failure(tmp_path, "# Spec\n\n~~~~\nx\n~~~\n")


def test_closed_fences_in_quotes_and_lists_are_closed(tmp_path):
    text = "# Spec\n\n> ```sql\n> SELECT 1;\n> ```\n\n- item\n\n  ```sql\n  SELECT 2;\n  ```\n"
    assert [b.sql for b in _load(tmp_path, text).blocks] == ["SELECT 1;\n", "SELECT 2;\n"]


def test_line_separators_markdown_does_not_count_do_not_shift_lines(tmp_path):
    # str.splitlines() splits on \u2028 and \x0c; markdown-it does not: lines must agree
    text = "# Spec\u2028still line 1\x0c\n\n```sql\nSELECT 1;\n```\n"
    assert _load(tmp_path, text).blocks[0].line == 4


@pytest.mark.parametrize("value", ["abc", "nan", "-1", "0", "inf", ""])
def test_a_target_that_is_not_a_positive_number_names_its_line(tmp_path, value):
    text = f"# Spec\n\n| percentile | target (seconds) |\n|---|---|\n| p50 | 3 |\n| p95 | {value} |\n"
    message = _failure(tmp_path, text)
    assert message.startswith(f"{SPEC_FILENAME}:6: target p95 is")


def test_a_spec_path_that_cannot_be_read_is_one_message(tmp_path):
    with pytest.raises(SpecError) as err:  # ENAMETOOLONG: an OSError that is not "missing"
        Spec.load(tmp_path / ("x" * 300))
    assert str(err.value).startswith(f"{SPEC_FILENAME} cannot be read: File name too long")
    assert err.value.hint == RESTORE


def test_a_spec_beyond_the_size_bound_is_one_message(tmp_path, monkeypatch):
    from leaddb import spec as spec_module

    monkeypatch.setattr(spec_module, "MAX_SPEC_BYTES", 2048)
    (tmp_path / SPEC_FILENAME).write_bytes(b"# S\n" + b"x" * 2045)
    with pytest.raises(SpecError) as err:
        Spec.load(tmp_path / SPEC_FILENAME)
    assert str(err.value) == f"{SPEC_FILENAME} is larger than 2 KiB: not the spec\n  next step: {RESTORE}"
    (tmp_path / SPEC_FILENAME).write_bytes(b"# S\n" + b"x" * 2044)  # exactly the bound: read
    assert Spec.load(tmp_path / SPEC_FILENAME).sections[0].heading == "S"


def test_a_spec_is_read_no_further_than_one_byte_past_its_bound(tmp_path):
    """Enough to tell that it is too large, and no more: the file may be anything."""
    from leaddb import spec as spec_module

    (tmp_path / SPEC_FILENAME).write_bytes(b"x" * 100)
    assert spec_module._read_bytes(tmp_path / SPEC_FILENAME, 10) == b"x" * 11
    assert spec_module._read_bytes(tmp_path / SPEC_FILENAME, 100) == b"x" * 100


@pytest.mark.posix_only("FIFOs and device nodes are POSIX's (os.mkfifo, os.mknod)")
def test_a_spec_that_is_a_fifo_is_refused_rather_than_waited_on(tmp_path):
    import os

    os.mkfifo(tmp_path / SPEC_FILENAME)
    with pytest.raises(SpecError) as err:
        Spec.load(tmp_path / SPEC_FILENAME)
    assert str(err.value) == (
        f"{SPEC_FILENAME} is not a regular file (a FIFO, socket or device)\n  next step: {RESTORE}"
    )


def test_section_at_matches_a_walk_of_every_heading():
    """A binary search now (every block and declaration asks): the same answer as the walk."""
    text = "intro\n\n" + "".join(f"{'#' * (1 + n % 3)} H{n}\n\ntext {n}\n\n" for n in range(40))
    spec = Spec(Path("s.md"), text)
    for line in range(1, text.count("\n") + 2):
        walked = None
        for section in spec.sections:
            if section.line <= line:
                walked = section
        assert spec.section_at(line) == walked, line


def test_spec_messages_quote_an_excerpt_of_the_spec():
    secret = "x" * 500
    table = f"| percentile | target (seconds) |\n|---|---|\n| p50 | {secret} |\n"
    with pytest.raises(SpecError) as err:
        Spec(Path("s.md"), table).check()
    assert str(err.value).startswith(f"{SPEC_FILENAME}:3: target p50 is '{'x' * 38} …', not a number")
    fence = f"```sql {secret}\nSELECT 1;\n"
    with pytest.raises(SpecError) as err:
        Spec(Path("s.md"), fence).check()
    assert len(str(err.value).splitlines()[0]) < 150
