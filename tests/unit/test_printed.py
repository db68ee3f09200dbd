"""The rule "printed in the spec": verbatim both ways. Every migration file is byte for byte the
block the spec prints for it, and every block the spec prints is a file; checked by
``verdict.load``, so by every task before it touches a server (issue 17, section 5: a file the
spec did not print passed lint, reset, reapply, status, drift and introspect)."""

from __future__ import annotations

from pathlib import Path

import pytest
from unit_support import DECLARATION, SPEC_HEAD, compliant, printed

from leaddb import rules, verdict
from leaddb.rules import RulesBroken
from leaddb.spec import SPEC_FILENAME, Spec

A, B, C = "0001_a.sql", "0002_b.sql", "0003_c.sql"
ROLE = (
    "DO $$\nBEGIN\n    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'x') THEN\n"
    "        EXECUTE 'CREATE ROLE x SUPERUSER';\n    END IF;\nEND\n$$;\n"
)


def refusals(project: Path) -> list[tuple[str, int, str, str]]:
    with pytest.raises(RulesBroken) as err:
        verdict.load(project)
    return [(v.file, v.line, v.rule, v.what) for v in err.value.violations]


def spec_line(project: Path, fragment: str) -> int:
    text = (project / SPEC_FILENAME).read_text(encoding="utf-8")
    return text[: text.index(fragment)].count("\n") + 1


def test_a_file_the_spec_does_not_print_is_refused_before_anything_runs(make_project):
    """The issue's file: it follows every other rule, and would make a superuser."""
    files = {A: compliant(A), B: compliant(B)}
    project = make_project(files, spec=SPEC_HEAD + DECLARATION + printed({A: files[A]}), print_files=False)
    assert refusals(project) == [
        (
            f"api/db/migrations/{B}",
            0,
            "printed in the spec",
            "the spec prints no block for this file, and nothing runs that the spec does not print",
        )
    ]


def test_a_spec_that_prints_no_block_at_all_runs_nothing(make_project):
    project = make_project({A: compliant(A)}, print_files=False)
    assert [(f, rule) for f, _, rule, _ in refusals(project)] == [
        (f"api/db/migrations/{A}", "printed in the spec")
    ]


def test_a_file_that_differs_from_its_block_names_the_first_line_and_the_spec_line(make_project):
    files = {A: compliant(A, "CREATE TABLE IF NOT EXISTS a (id int);\n")}
    spec = SPEC_HEAD + DECLARATION + printed({A: files[A].replace("(id int)", "(id bigint)")})
    project = make_project(files, spec=spec, print_files=False)
    line = spec_line(project, "CREATE TABLE IF NOT EXISTS a (id bigint)")
    assert refusals(project) == [
        (
            f"api/db/migrations/{A}",
            3,
            "printed in the spec",
            f"differs from its block in the spec ({SPEC_FILENAME}:{line}) from this line on",
        )
    ]


@pytest.mark.parametrize(
    ("edit", "line"),
    [
        (lambda t: t + "-- a comment after COMMIT\n", 5),  # more after the block: not the block
        (lambda t: t.replace("BEGIN;\n", "BEGIN;\n" + ROLE), 3),  # a guarded DO … EXECUTE slipped in
        (lambda t: t.replace("COMMIT;\n", "COMMIT;"), 4),  # a missing newline
        (lambda t: t.replace("(id int)", "(id  int)"), 3),  # whitespace
    ],
)
def test_byte_for_byte_not_a_substring(make_project, edit, line):
    """The old check asked whether the block appears in the file; the file is the block."""
    block = compliant(A)
    project = make_project(
        {A: edit(block)}, spec=SPEC_HEAD + DECLARATION + printed({A: block}), print_files=False
    )
    assert [(n, rule) for _, n, rule, _ in refusals(project) if rule == "printed in the spec"] == [
        (line, "printed in the spec")
    ]


def test_a_block_naming_a_missing_file_is_refused(make_project):
    files = {A: compliant(A)}
    spec = SPEC_HEAD + DECLARATION + printed({A: files[A], B: compliant(B)})
    project = make_project(files, spec=spec, print_files=False)
    line = spec_line(project, "-- migration: api/db/migrations/0002_b.sql")
    where = f'{SPEC_FILENAME}:{line} (section "Migrations")'
    assert refusals(project) == [
        (
            f"api/db/migrations/{B}",
            0,
            "printed in the spec",
            f"printed in the spec ({where}), but there is no such file",
        )
    ]


def test_a_block_naming_a_file_outside_the_directory_or_twice(make_project):
    files = {A: compliant(A)}
    outside = "```sql\n-- migration: db/other/0002_b.sql\nBEGIN;\nCOMMIT;\n```\n"
    spec = SPEC_HEAD + DECLARATION + printed(files) + "\n" + outside + "\n" + printed(files).split("\n", 3)[3]
    project = make_project(files, spec=spec, print_files=False)
    found = refusals(project)
    assert [(f, rule, what.split(" (")[0]) for f, _, rule, what in found] == [
        ("api/db/migrations/0001_a.sql", "printed in the spec", "printed 2 times in the spec"),
        ("db/other/0002_b.sql", "printed in the spec", "printed in the spec"),
    ]
    assert "outside the migrations directory `api/db/migrations`" in found[1][3]


def test_a_block_outside_the_directory_is_refused_for_where_it_is_only_not_for_its_order(make_project):
    """Its number says nothing of the apply order: the directory's files are all that is applied."""
    files = {A: compliant(A)}
    outside = "```sql\n-- migration: db/other/0002_b.sql\nBEGIN;\nCOMMIT;\n```\n"
    project = make_project(
        files, spec=SPEC_HEAD + DECLARATION + outside + "\n" + printed(files), print_files=False
    )
    found = refusals(project)
    assert [(f, rule) for f, _, rule, _ in found] == [("db/other/0002_b.sql", "printed in the spec")]
    assert "outside the migrations directory `api/db/migrations`" in found[0][3]


def test_blocks_in_another_order_than_the_files_are_refused(make_project):
    """drift applies the spec's blocks in the spec's order, the tasks the files in name order."""
    files = {A: compliant(A), B: compliant(B)}
    spec = SPEC_HEAD + DECLARATION + printed({B: files[B]}) + printed({A: files[A]})
    project = make_project(files, spec=spec, print_files=False)
    assert refusals(project) == [
        (
            f"api/db/migrations/{A}",
            0,
            "printed in the spec",
            "printed in the spec after a file with a higher number: the spec prints them in apply order",
        )
    ]


def test_an_unreadable_file_is_refused_by_its_own_rule_not_reported_missing(make_project):
    files = {A: compliant(A), B: b"\xff\xfe not utf-8\n"}
    spec = SPEC_HEAD + DECLARATION + printed({A: files[A], B: compliant(B)})
    project = make_project(files, spec=spec, print_files=False)
    assert [(f, rule) for f, _, rule, _ in refusals(project)] == [(f"api/db/migrations/{B}", "text")]


def test_every_file_and_block_is_named_at_once(make_project):
    files = {A: compliant(A), B: compliant(B), C: compliant(C)}
    spec = (
        SPEC_HEAD
        + DECLARATION
        + printed({A: files[A], B: files[B] + "-- more\n", "0004_d.sql": compliant("0004_d.sql")})
    )
    project = make_project(files, spec=spec, print_files=False)
    assert [
        (f.rsplit("/", 1)[1], what.split(" (")[0].split(",")[0]) for f, _, _, what in refusals(project)
    ] == [
        ("0002_b.sql", "differs from its block in the spec"),
        ("0003_c.sql", "the spec prints no block for this file"),
        ("0004_d.sql", "printed in the spec"),
    ]


def test_the_repositorys_files_are_its_specs_blocks(project_dir):
    spec = Spec.load(project_dir / SPEC_FILENAME)
    files = verdict.load(project_dir)
    assert [(m.name, m.text) for m in files] == [
        (Path(b.name).name, b.sql) for b in spec.blocks_of("migration")
    ]


@pytest.mark.parametrize(
    ("a", "b", "line"),
    [
        ("x\ny\n", "x\nz\n", 2),
        ("x\n", "x\ny\n", 2),
        ("x\ny\nz\n", "x\n", 2),
        ("a\n", "b\n", 1),
        ("", "b\n", 1),
        ("x", "x\n", 1),
    ],
)
def test_first_difference(a, b, line):
    assert rules._first_difference(a, b) == line


def test_the_rule_has_its_next_step():
    assert rules.FIXES[rules.PRINTED].startswith(
        "print the file's SQL in the spec's section \"Migrations\" first"
    )


def described(project: Path) -> list[tuple[str, int, str, str, str]]:
    with pytest.raises(RulesBroken) as err:
        verdict.load(project)
    return [(v.file, v.line, v.rule, v.what, v.next_step) for v in err.value.violations]


def test_every_finding_has_its_line_and_next_step(make_project):
    files = {A: compliant(A), B: compliant(B), C: compliant(C), "0004_d.sql": compliant("0004_d.sql")}
    blocks = (
        printed({C: files[C] + "-- more\n"})  # C first: printed before a lower number
        + printed({A: files[A]})
        + printed({A: files[A]})  # twice
        + "\n```sql\n-- migration: db/other/0000_z.sql\nBEGIN;\nCOMMIT;\n```\n"  # outside, sorts first
        + "\n```sql\n-- migration: api/db/migrations/00001_x.sql\nBEGIN;\nCOMMIT;\n```\n"  # not a name
        + printed({"0005_e.sql": compliant("0005_e.sql")})  # no such file
    )
    project = make_project(files, spec=SPEC_HEAD + DECLARATION + blocks, print_files=False)
    spec = Spec.load(project / SPEC_FILENAME)
    line = {Path(b.name).name: b.line for b in spec.blocks}
    a_lines = [b.line for b in spec.blocks if b.name.endswith(A)]
    where = {name: f'{SPEC_FILENAME}:{line[name]} (section "Migrations")' for name in line}
    assert described(project) == [
        (
            "api/db/migrations/00001_x.sql",
            0,
            "printed in the spec",
            f"printed in the spec ({where['00001_x.sql']}), but there is no such file",
            "write the file: the block, byte for byte (or remove the block)",
        ),
        (
            f"api/db/migrations/{A}",
            0,
            "printed in the spec",
            f"printed 2 times in the spec ({SPEC_FILENAME} lines {a_lines[0]}, {a_lines[1]})",
            "print each migration file once",
        ),
        (
            f"api/db/migrations/{A}",
            0,
            "printed in the spec",
            "printed in the spec after a file with a higher number: the spec prints them in apply order",
            "print the blocks in file-name order",
        ),
        (
            f"api/db/migrations/{B}",
            0,
            "printed in the spec",
            "the spec prints no block for this file, and nothing runs that the spec does not print",
            rules.FIXES[rules.PRINTED],
        ),
        (
            f"api/db/migrations/{C}",
            5,
            "printed in the spec",
            f"differs from its block in the spec ({SPEC_FILENAME}:{line[C] + 4}) from this line on",
            "make the file its spec block byte for byte (change the spec first, then copy the block)",
        ),
        (
            "api/db/migrations/0004_d.sql",
            0,
            "printed in the spec",
            "the spec prints no block for this file, and nothing runs that the spec does not print",
            rules.FIXES[rules.PRINTED],
        ),
        (
            "api/db/migrations/0005_e.sql",
            0,
            "printed in the spec",
            f"printed in the spec ({where['0005_e.sql']}), but there is no such file",
            "write the file: the block, byte for byte (or remove the block)",
        ),
        (
            "db/other/0000_z.sql",
            0,
            "printed in the spec",
            f"printed in the spec ({where['0000_z.sql']}), "
            "outside the migrations directory `api/db/migrations`",
            "name the file as `-- migration: api/db/migrations/NNNN_name.sql` on the block's first line",
        ),
    ]
